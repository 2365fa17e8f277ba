"""Resolve `model.name` to local weights and load tokenizers, fast and offline-safe.

Order: a local folder, then a catalog name (`tasktune.models.catalog`), then a Hub id that is
already in the local Hugging Face cache, then a Hub id fetched online. When the Hub cannot be
reached the last step fails within about a second, instead of after transformers' retries.

Example: `resolve_model("runs/x/best")` -> "runs/x/best"
"""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

from tasktune.errors import UserError
from tasktune.models.catalog import CATALOG, catalog_path

HUB_HOST = ("huggingface.co", 443)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def hub_reachable(timeout: float = 1.0) -> bool:
    """True when a TCP connection to the Hub opens within `timeout` seconds (DNS included)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    result = []

    def probe():
        try:
            socket.create_connection(HUB_HOST, timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    # A thread bounds DNS resolution too, which socket timeouts do not cover.
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result)


def _cached_hub_snapshot(name: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id: both mean "not available offline"
        return None


def resolve_model(name: str, convert: bool = True) -> str:
    """A local folder holding `name`'s weights, or the Hub id itself when the Hub is reachable.

    A catalog model is converted on first use unless `convert` is False (checks that load no model).
    Raises UserError with the fix when nothing matches.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise UserError(f"model folder '{name}' has no config.json; point model.name at a transformers folder")
        return str(path)
    local = catalog_path(name, convert)
    if local is not None:
        return local
    if name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        raise UserError(f"model folder '{name}' not found; check model.name (or see catalog names: "
                        f"{', '.join(CATALOG)})")
    cached = _cached_hub_snapshot(name)
    if cached:
        return cached
    if not hub_reachable():
        raise UserError(f"model '{name}' is not a local folder, not a catalog name ({', '.join(CATALOG)}) "
                        "and the model hub is unreachable; pass a local folder or a catalog name")
    return name


def load_tokenizer(path: str, padding_side: str = "right"):
    """AutoTokenizer for `path` with a pad token (decoders often lack one: reuse EOS) and the given side."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = padding_side
    return tok


def torch_dtype(name: str):
    """A value for from_pretrained's `dtype=`: 'auto' keeps the checkpoint's dtype, except on a CPU
    without bf16 units, where half-precision weights would run every matmul ~100x slower: float32 there."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    from tasktune.precision import decide_bf16

    if torch.cuda.is_available() or decide_bf16("auto").bf16:
        return "auto"
    return torch.float32


def load_causal_lm(path: str, dtype: str = "auto", **kwargs):
    """The causal LM at `path` (AutoModelForCausalLM) in `dtype` (a model.dtype name, see torch_dtype).

    Every causal LM tasktune runs is loaded here, so none misses the LM-head change of
    models/lm_head.fp32_head_for_few_rows (the head skips CPU bf16 autocast for a few rows).
    `kwargs` go to from_pretrained (attention, quantization...).

    Example: model = load_causal_lm("runs/x/best", "auto", attn_implementation="sdpa")
    """
    from transformers import AutoModelForCausalLM

    from tasktune.models.lm_head import fp32_head_for_few_rows

    return fp32_head_for_few_rows(AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(dtype), **kwargs))


def attention_kwargs(path: str, cfg, config=None) -> dict:
    """from_pretrained kwargs for model.attention: {} for causal; for bidirectional, the config switch of
    the model types that have one (Gemma 3's `use_bidirectional_attention`, the switch behind
    EmbeddingGemma). Encoders are bidirectional already; another decoder is refused rather than patched.
    `config`: the model's config when the caller has it loaded already (else read from `path`).
    """
    if cfg.model.attention == "causal":
        return {}
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    config = config or AutoConfig.from_pretrained(path)
    if hasattr(config, "use_bidirectional_attention"):
        return {"use_bidirectional_attention": True}
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return {}  # an encoder: every token already sees the whole input
    raise UserError(f"model.attention bidirectional: model type '{config.model_type}' has no switch for it in "
                    f"transformers (types that do: {', '.join(BIDIRECTIONAL_TYPES)}); use model.attention=causal")


def attn_kwargs(name: str | None, for_training: bool) -> dict:
    """from_pretrained kwargs for model.attn_implementation ({} leaves transformers' default, sdpa).

    Refused up front where it cannot run: flex_attention has no backward pass on CPUs (torch 2.13),
    flash_attention_2 needs the flash-attn package and a GPU.
    """
    if name is None:
        return {}
    import importlib.util

    import torch

    if name == "flex_attention" and for_training and not torch.cuda.is_available():
        raise UserError("model.attn_implementation=flex_attention trains on GPUs only (PyTorch has no flex "
                        "attention backward pass on CPUs); remove it or use sdpa")
    if name == "flash_attention_2" and (not torch.cuda.is_available() or importlib.util.find_spec("flash_attn") is None):
        raise UserError("model.attn_implementation=flash_attention_2 needs a CUDA GPU and the flash-attn package "
                        "(pip install flash-attn); remove it or use sdpa / flex_attention")
    return {"attn_implementation": name}


# Decoder configs with a `use_bidirectional_attention` switch in transformers 5 (for the message above).
BIDIRECTIONAL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3n_text", "gemma4_text")


def to_device(model):
    """`model` on the GPU when there is one (inference), else unchanged."""
    import torch

    return model.to("cuda") if torch.cuda.is_available() else model
