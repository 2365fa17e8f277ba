"""LoRA through peft, shared by every task: wrap for training, reload for eval, merge for export.

A task only names its peft task type (e.g. SEQ_CLS, so peft trains and saves the new head in
full); everything else comes from `model.lora` in the config.

Example:
    model = apply_lora(model, cfg.model.lora, task_type="SEQ_CLS")
    model = load_adapter(base_model, "runs/x/best")      # eval / predict
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("tasktune")
ADAPTER_CONFIG = "adapter_config.json"


@contextmanager
def _peft_reads_renamed_attribute():
    """Silence the one FutureWarning peft 0.21 triggers on every wrap: it reads transformers'
    `is_gradient_checkpointing`, renamed in transformers 5 (old name kept until v6). Nothing a tasktune user
    can act on, and it printed on every `predict`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def is_adapter(folder: str | Path) -> bool:
    """True when `folder` holds a peft adapter rather than full weights."""
    return (Path(folder) / ADAPTER_CONFIG).is_file()


def apply_lora(model, lora, task_type: str | None):
    """`model` wrapped with LoRA adapters per the `model.lora` settings; logs the trainable share."""
    from peft import LoraConfig, get_peft_model

    targets = lora.target_modules
    layers = _layer_indices(model, lora.layers)
    if targets == "all-linear" and ((task_type is None and lora.modules_to_save) or layers is not None):
        # peft's 'all-linear' knows the output layers of its own task types only; on a custom head it
        # would adapt the head that modules_to_save trains in full, which peft refuses. With chosen
        # layers we name the modules ourselves, and the heads stay out.
        targets = linear_layer_names(model, exclude=[*(lora.modules_to_save or ()), *_head_names(model, task_type)])
    if layers is not None:
        # peft's layers_to_transform finds layer numbers by a pattern that needs a prefix before the layer
        # stack (model.layers.N): a bare backbone (layers.N, as AutoModel loads it) never matches. Full
        # module names inside the chosen layers work for every model.
        targets = _modules_in_layers(model, targets, layers)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, modules_to_save=lora.modules_to_save, task_type=task_type)
    with _peft_reads_renamed_attribute():
        model = get_peft_model(model, config)
    from tasktune.models.lora_dropout import swap_lora_dropout

    swap_lora_dropout(model)  # same p; peft's nn.Dropout draws masks slowly on CPUs (see lora_dropout.py)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA r=%d on %s%s: %s of %s parameters trainable (%.2f%%)", lora.r, lora.target_modules,
             f", layers {layers}" if layers else "", f"{trainable:,}", f"{total:,}", 100 * trainable / total)
    return model


def layer_stack(model):
    """(name, ModuleList) of the model's transformer layers: the module list as long as its config's
    num_hidden_layers (also inside peft wrappers); None when there is no such config or list.

    Example: layer_stack(gemma_270m) -> ("model.layers", ModuleList of 18 Gemma3DecoderLayer)
    """
    from torch import nn

    total = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if not total:
        return None
    return next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == total), None)


def _modules_in_layers(model, names: list[str], layers: list[int]) -> list[str]:
    """Full names of the linear modules called `names` inside the given transformer layers."""
    from torch import nn

    from tasktune.errors import UserError

    found = layer_stack(model)
    if found is None:
        raise UserError("model.lora.layers: could not find this model's stack of layers; remove model.lora.layers")
    stack = found[0]
    prefixes = tuple(f"{stack}.{i}." for i in layers)
    found = [n for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n.split(".")[-1] in set(names) and n.startswith(prefixes)]
    if not found:
        raise UserError(f"model.lora.layers: none of {names} is inside layers {layers}; check model.lora.target_modules")
    return found


def _layer_indices(model, layers) -> list[int] | None:
    """`model.lora.layers` as indices: a list as given, N as the top N layers, None as every layer."""
    from tasktune.errors import UserError

    if layers is None or isinstance(layers, list):
        return layers
    total = getattr(model.config, "num_hidden_layers", None)
    if total is None:
        raise UserError("model.lora.layers: this model's config has no num_hidden_layers; list the indices instead")
    if not 0 < layers <= total:
        raise UserError(f"model.lora.layers={layers}: the model has {total} layers; choose 1..{total}")
    return list(range(total - layers, total))


def _head_names(model, task_type: str | None) -> list[str]:
    """Names of the output heads peft's 'all-linear' leaves out: the LM head, a sequence classifier."""
    from peft.utils.constants import SEQ_CLS_HEAD_NAMES

    out = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = [n.split(".")[-1] for n, m in model.named_modules() if out is not None and m is out]
    return names + (list(SEQ_CLS_HEAD_NAMES) if task_type == "SEQ_CLS" else [])


def linear_layer_names(model, exclude=()) -> list[str]:
    """Last-component names of the model's linear layers outside the modules named in `exclude`."""
    from torch import nn

    names = set()
    for full, module in model.named_modules():
        if isinstance(module, nn.Linear) and not set(full.split(".")) & set(exclude):
            names.add(full.split(".")[-1])
    return sorted(names)


def load_adapter(base_model, folder: str | Path):
    """The base model with the adapter (and any heads saved beside it) from `folder`, for inference."""
    from peft import PeftModel

    with _peft_reads_renamed_attribute():
        return PeftModel.from_pretrained(base_model, str(folder), is_trainable=False)


def merge(model):
    """A plain transformers model with the LoRA weights folded in (no peft needed to load it)."""
    return model.merge_and_unload()


def weights_sha256(folder: str | Path) -> str | None:
    """One sha256 over a model folder's weight files (sorted by name), to pin an adapter's base."""
    from tasktune.fingerprint import sha256_files

    files = sorted(p for p in Path(folder).glob("*") if p.suffix in (".safetensors", ".bin", ".gguf"))
    return sha256_files(files) if files else None


def adapter_base(folder: str | Path) -> str:
    """The base model folder an adapter was trained on (as recorded by peft)."""
    import json

    from tasktune.errors import UserError

    base = json.loads((Path(folder) / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base or not Path(base).is_dir():
        raise UserError(f"the LoRA adapter in '{folder}' needs its base model '{base}', which is not here; "
                        "restore it or export a merged model where it is (tasktune export RUN --merge-lora)")
    return base


def quantization_kwargs(mode: str | None, bf16="auto") -> dict:
    """from_pretrained kwargs that load a base model in 4 or 8 bits (bitsandbytes); {} for None.

    `bf16` is the train.bf16 setting: 4-bit layers compute in bf16 where it is fast (the QLoRA
    recipe), else in fp16 on a GPU and fp32 on a CPU without bf16 units.
    """
    if mode is None:
        return {}
    import torch
    from transformers import BitsAndBytesConfig

    from tasktune.precision import decide_bf16

    if mode == "8bit":
        return {"quantization_config": BitsAndBytesConfig(load_in_8bit=True)}
    fast = decide_bf16(bf16).bf16
    compute = torch.bfloat16 if fast else torch.float16 if torch.cuda.is_available() else torch.float32
    return {"quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute)}


def load_model(path: str, loader, cfg, task_type: str | None, for_training: bool):
    """Load weights at `path` with `loader(path, **kwargs)`, adapting them for training or inference.

    - `path` holds an adapter: load its base with `loader` (quantized as in training), then the adapter.
    - training with `model.lora`: wrap in fresh LoRA adapters (on a quantized base with
      `model.quantization`: QLoRA).
    - full fine-tuning of a low-precision checkpoint: upcast to fp32.
    - `model.gradient_checkpointing`: recompute activations in the backward pass.
    - `train.compile`: the transformer layers compiled in place (models/compile_layers.py).
    """
    import torch

    quant = quantization_kwargs(cfg.model.quantization, cfg.train.bf16)
    from tasktune.models.loading import attn_kwargs

    attn = attn_kwargs(cfg.model.attn_implementation, for_training)
    if is_adapter(path):
        return load_adapter(loader(adapter_base(path), **quant, **attn), path)
    model = loader(path, **(quant if for_training else {}), **attn)
    if not for_training:
        return model
    if cfg.model.lora is None and model.dtype != torch.float32:
        # Trainable weights stay fp32 (bf16 is autocast via train.bf16): optimizer updates below
        # bf16's resolution would otherwise vanish. Said aloud, since it changes the loaded dtype.
        log.info("full fine-tuning: upcasting %s weights to float32 for training", model.dtype)
        model = model.float()
    if quant:
        from peft import prepare_model_for_kbit_training

        # Casts the non-quantized weights (norms, heads) to fp32 and sets up gradient checkpointing.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.model.gradient_checkpointing)
    elif cfg.model.gradient_checkpointing:
        # transformers 5.x renamed it (the old name warns of removal in v6); non-reentrant needs no input grads.
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora is not None:
        model = apply_lora(model, cfg.model.lora, task_type)
        _trainable_modules_fp32(model)
    if cfg.train.compile:
        from tasktune.models.compile_layers import compile_layers

        compile_layers(model)
    return model


def _cast_inputs_fp32(module, args):
    import torch

    return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)


def _trainable_modules_fp32(model) -> None:
    """Keep every trainable weight in fp32 under LoRA, also a new head on a bf16/fp16 checkpoint.

    peft already keeps adapter weights fp32 and casts their inputs; a fully trained module (a new
    classification head saved via modules_to_save) would otherwise stay in the checkpoint's dtype.
    Such a module is upcast and its inputs cast to fp32 on the way in, so the frozen low-precision
    backbone can feed it.
    """
    import torch

    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if own and "lora_" not in name and any(p.dtype != torch.float32 for p in own):
            module.float()
            module.register_forward_pre_hook(_cast_inputs_fp32)
