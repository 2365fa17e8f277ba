"""What every new head on a backbone shares: per-dimension standardisation, and a head class per family.

- `FeatureStandardizer`: (hidden - mean) / std per dimension, measured on the first training batch.
  Decoders' last hidden states are badly scaled for a new linear head: gemma-3-270m's final norm
  multiplies some dimensions by up to 300, so per-dimension spread runs from 0.1 to 30 and five
  dimensions carry a third of the variance; Adam moves every weight by about the learning rate, so
  the loud dimensions swing the logits and the quiet ones learn nothing. Encoders' LayerNorm outputs
  are well scaled already and lose nothing by it. Used by the span head (extractive QA) and the pooled
  classification head.
- `family_head_class`: a subclass of a family's PreTrainedModel with a head mixin in front (like
  transformers' own *ForQuestionAnswering classes), so `from_pretrained` loads any checkpoint of the
  family (base model, causal LM, a tasktune best/ folder) and `save_pretrained` writes an ordinary folder.
- `pooled`: token states -> one vector per row (retrieval's encoder, the pooled classification head).

Example:
    cls = family_head_class(AutoConfig.from_pretrained(path), _SpanExtraction, "ForSpanExtraction", HEADS)
    model = cls.from_pretrained(path)
"""

from __future__ import annotations

import torch
from torch import nn

_CLASSES: dict[str, type] = {}


class FeatureStandardizer(nn.Module):
    """(hidden - mean) / std per dimension, with mean and std taken from the first batch seen in training.

    Buffers (saved in checkpoints and with LoRA's modules_to_save): `mean`, `std`, and `ready`
    (0 until measured). A model that is only evaluated before any training keeps the identity.
    Under DDP the statistics are summed over every process's first batch: the same as one process
    measuring the whole first batch.
    """

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(size))
        self.register_buffer("std", torch.ones(size))
        self.register_buffer("ready", torch.zeros(()))

    def forward(self, hidden, mask=None):
        if self.training and not bool(self.ready):
            with torch.no_grad():
                real = hidden.detach().float()
                real = real[mask.bool()] if mask is not None else real.flatten(0, -2)   # real tokens only
                mean, std = _moments(real)
                self.mean.copy_(mean)
                # A floor keeps dead dimensions (constant over tokens) from being blown up.
                self.std.copy_(std.clamp(min=1e-2 * std.mean().item() + 1e-6))
                self.ready.fill_(1)
        return (hidden - self.mean.to(hidden.dtype)) / self.std.to(hidden.dtype)

    def reset(self) -> None:
        """Back to the identity, to be measured again (a new head's init)."""
        self.mean.zero_()
        self.std.fill_(1.0)
        self.ready.zero_()


class HeadMixin:
    """What a head mixin shares (put before the family's PreTrainedModel by `family_head_class`): the listed
    `zero_heads` start at zero, a standardiser starts as the identity, the input embeddings are the backbone's.

    Zero heads: every class (position, label) starts equally likely. A random head on a decoder's large hidden
    states (gemma's reach tens) starts with logits in the tens, and the first hundred clipped steps go to
    undoing them.
    """

    zero_heads: tuple[str, ...] = ()

    def _init_weights(self, module):
        if any(module is getattr(self, name, None) for name in self.zero_heads):
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, FeatureStandardizer):
            module.reset()
        else:
            super()._init_weights(module)

    def get_input_embeddings(self):
        return getattr(self, self.base_model_prefix).get_input_embeddings()

    def set_input_embeddings(self, value):
        getattr(self, self.base_model_prefix).set_input_embeddings(value)


def _moments(rows):
    """Per-column mean and (unbiased) std of `rows` (tokens, hidden), over every process's rows under DDP."""
    from tasktune.engine.distributed import world

    sums = torch.stack([torch.full_like(rows[0], rows.shape[0]), rows.sum(0), rows.pow(2).sum(0)]).double()
    if world()[0] > 1:
        torch.distributed.all_reduce(sums)
    n, total, squares = sums
    mean = total / n
    return mean.float(), ((squares - n * mean ** 2) / (n - 1)).clamp(min=0).sqrt().float()


def family_head_class(config, mixin: type, suffix: str, heads: list[str]) -> type:
    """`mixin` in front of `config`'s family PreTrainedModel, named e.g. Gemma3TextForSpanExtraction; made once.

    `heads` are the mixin's new modules: transformers' "newly initialized" report for them is silenced (they
    are new on a base checkpoint and come from the adapter on a LoRA run, so the report would mislead).
    """
    from transformers import AutoModel, PreTrainedModel

    from tasktune.errors import UserError

    try:
        backbone = AutoModel._model_mapping[type(config)]
    except KeyError:
        raise UserError(f"model type '{config.model_type}' has no AutoModel backbone in transformers, so tasktune "
                        f"cannot put a new head ({suffix.removeprefix('For')}) on it; choose another model") from None
    family = next(b for b in backbone.__mro__[1:] if issubclass(b, PreTrainedModel))
    name = backbone.__name__.removesuffix("Model") + suffix
    if name not in _CLASSES:
        _CLASSES[name] = type(name, (mixin, family), {
            "config_class": backbone.config_class, "base_model_prefix": family.base_model_prefix,
            "_keys_to_ignore_on_load_missing": [rf"(^|\.){h}\." for h in heads],
            "__module__": mixin.__module__})
    return _CLASSES[name]


def pooled(hidden, mask, pooling: str):
    """(batch, hidden) vectors from (batch, length, hidden) states and the attention mask: `mean` of the real
    tokens, `cls` (position 0) or `last` real token (right padding). Example: pooled(h, mask, "mean")"""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "last":
        last = mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def backbone_hidden(model, input_ids, attention_mask, token_type_ids=None):
    """The backbone's last hidden states (batch, length, hidden) for a head mixin's forward."""
    extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    return getattr(model, model.base_model_prefix)(input_ids=input_ids, attention_mask=attention_mask,
                                                   use_cache=False, **extra).last_hidden_state, attention_mask


def load_with_head(path: str, cfg, class_for, config_values: dict, heads: list[str], for_training: bool):
    """A model of `class_for(config)` (a `family_head_class`) at `path`, with `config_values` set on its config
    (saved with it), the attention setting applied, and LoRA per cfg with the new `heads` trained in full.

    Example: load_with_head(path, cfg, span_model_class, {"span_features": "token"}, HEADS, True)
    """
    from transformers import AutoConfig

    from tasktune.models.loading import attention_kwargs, torch_dtype
    from tasktune.models.peft_adapters import load_model

    def loader(p, **kwargs):
        config = AutoConfig.from_pretrained(p)
        # Read by the constructors and saved in config.json with the model.
        for key, value in {**attention_kwargs(p, cfg, config), **config_values}.items():
            setattr(config, key, value)
        return class_for(config).from_pretrained(p, config=config, dtype=torch_dtype(cfg.model.dtype), **kwargs)

    if cfg.model.lora is not None:
        # The new heads are trained in full and saved beside the adapter.
        lora = cfg.model.lora.model_copy(update={"modules_to_save": (cfg.model.lora.modules_to_save or []) + heads})
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lora": lora})})
    return load_model(path, loader, cfg, None, for_training)
