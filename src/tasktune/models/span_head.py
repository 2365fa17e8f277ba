"""A span-extraction head for any backbone `AutoModel` knows: encoders and decoders alike.

transformers has question-answering heads for some families (BERT, Llama, Qwen2) but not for
others (Gemma 3), and its heads read "no answer" from position 0, which is a [CLS] token only in
encoders. This head is the same for every backbone:

- start/end logits from a linear layer over every token's hidden state;
- a learned no-answer pair (null start, null end) from the hidden state of the sequence's last
  real token: in a decoder it is the only position that has seen the whole input, and in an
  encoder it sees everything anyway (batches are padded on the right);
- the heads read standardised features: each hidden dimension minus its mean, over its standard
  deviation, both measured on the first training batch (`models/heads.FeatureStandardizer`: why
  decoders need it is said there);
- what a position's start/end score reads is `config.span_features` (saved in config.json):
  `token` reads h_t; `token_next` reads [h_t ; h_(t+1)], so under causal attention a start token
  also sees the token after it (a decoder's h_t cannot see the answer that starts at t);
  `bilinear` reads h_t and adds a low-rank start-end term u(h_s) . v(h_e) / sqrt(rank) to a span's
  score, so an end is chosen knowing its start (the pair term rides in the logits' channels 2: as
  u then v; `qa_spans.top_spans` scores every valid span with it, `span_loss` conditions the end on
  the gold start);
- logits are returned as one tensor (batch, 1 + length, 2): index 0 is the null pair, index
  1 + t is token t; tokens outside the context (question, special tokens, padding) are masked
  to the dtype's minimum, so a softmax over the positions is a distribution over "null or a
  context token".

The model class is made per family (`models/heads.family_head_class`), so `from_pretrained` loads
any checkpoint of the family - a base model, a causal LM, or a tasktune best/ folder.

Example:
    cls = span_model_class(AutoConfig.from_pretrained(path))
    model = cls.from_pretrained(path)           # head newly initialised, backbone loaded
    out = model(input_ids=ids, attention_mask=mask, context_mask=ctx)
    out.logits.shape                            # (batch, 1 + length, 2), 2 + 2 * PAIR_RANK with bilinear
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from tasktune.models.heads import FeatureStandardizer, HeadMixin, backbone_hidden, family_head_class

HEADS = ["head_norm", "span_head", "null_head", "pair_head"]  # trained in full beside LoRA (modules_to_save)
SPAN_FEATURES = {"token": 1, "token_next": 2, "bilinear": 1}  # what start/end scores read -> width in hidden sizes
PAIR_RANK = 64  # width of the bilinear start-end term's projections (span_features: bilinear)


@dataclass
class SpanOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


class _SpanExtraction(HeadMixin):
    """Mixin put in front of a family's PreTrainedModel by `span_model_class`."""

    zero_heads = ("span_head", "null_head")

    def __init__(self, config):
        from transformers import AutoModel

        super().__init__(config)
        setattr(self, self.base_model_prefix, AutoModel.from_config(config))
        self.head_norm = FeatureStandardizer(config.hidden_size)
        self.span_features = getattr(config, "span_features", "token")
        self.span_head = nn.Linear(SPAN_FEATURES[self.span_features] * config.hidden_size, 2)
        self.null_head = nn.Linear(config.hidden_size, 2)
        if self.span_features == "bilinear":
            self.pair_head = nn.Linear(config.hidden_size, 2 * PAIR_RANK, bias=False)
        self.post_init()

    def _init_weights(self, module):
        if module is getattr(self, "pair_head", None):
            # Start projections at unit scale on standardised features, end projections at zero: the pair
            # term starts at 0 and both halves get gradients once the end half moves (as LoRA's B = 0).
            with torch.no_grad():
                nn.init.normal_(module.weight[:PAIR_RANK], std=module.in_features ** -0.5)
                nn.init.zeros_(module.weight[PAIR_RANK:])
        else:
            super()._init_weights(module)

    def forward(self, input_ids=None, attention_mask=None, context_mask=None, token_type_ids=None, **kwargs):
        hidden, attention_mask = backbone_hidden(self, input_ids, attention_mask, token_type_ids)
        hidden = self.head_norm(hidden, attention_mask)
        spans = self.span_head(_span_inputs(hidden, attention_mask, self.span_features)).float()  # (batch, length, 2)
        last = attention_mask.sum(1) - 1                              # right padding: last real token
        null = self.null_head(hidden[torch.arange(hidden.shape[0], device=hidden.device), last]).float()
        if context_mask is not None:
            spans = spans.masked_fill(~context_mask.bool().unsqueeze(-1), torch.finfo(spans.dtype).min)
        logits = torch.cat([null.unsqueeze(1), spans], dim=1)
        if self.span_features == "bilinear":  # the null position's projections are 0: no pair term for "no answer"
            pair = self.pair_head(hidden).float() * PAIR_RANK ** -0.25  # u . v then carries 1 / sqrt(rank)
            logits = torch.cat([logits, torch.cat([torch.zeros_like(pair[:, :1]), pair], dim=1)], dim=-1)
        return SpanOutput(logits=logits)


def _span_inputs(hidden, attention_mask, features: str):
    """(batch, length, hidden) -> what the span head reads: h_t, or [h_t ; h_(t+1)] (zero after the last real token)."""
    if features != "token_next":
        return hidden
    nxt = torch.cat([hidden[:, 1:], torch.zeros_like(hidden[:, :1])], dim=1)
    real_next = torch.cat([attention_mask[:, 1:], torch.zeros_like(attention_mask[:, :1])], dim=1)
    return torch.cat([hidden, nxt * real_next.unsqueeze(-1).to(hidden.dtype)], dim=-1)


def span_model_class(config) -> type:
    """The span-extraction model class for `config`'s family, e.g. Gemma3TextForSpanExtraction."""
    return family_head_class(config, _SpanExtraction, "ForSpanExtraction", HEADS)
