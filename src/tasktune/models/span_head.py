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
  score, so an end is chosen knowing its start; `config.span_length_prior` adds a learned score of
  the span's length f(end - start) (`SpanLengthPrior`) to any of them. Both ride in the logits'
  channels 2: as one pair term u then v; `qa_spans.top_spans` scores every valid span with it,
  `span_loss` conditions the end on the gold start;
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
    out.logits.shape                            # (batch, 1 + length, 2); more with a pair term
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.utils import ModelOutput

from tasktune.models.heads import FeatureStandardizer, HeadMixin, backbone_hidden, family_head_class

HEADS = ["head_norm", "span_head", "null_head", "pair_head", "length_head"]  # trained in full (modules_to_save)
SPAN_FEATURES = {"token": 1, "token_next": 2, "bilinear": 1}  # what start/end scores read -> width in hidden sizes
PAIR_RANK = 64  # width of the bilinear start-end term's projections (span_features: bilinear)
LENGTH_FREQUENCIES = 16  # the span-length prior (span_length_prior): periods from 2 to ~360 tokens


class SpanLengthPrior(nn.Module):
    """A learned score f(d) for a span of end - start = d tokens, written as a dot product u(start) . v(end).

    Hidden states carry no absolute position (rotary models), so a bilinear term on them cannot learn
    "answers are short"; this can. f(d) = sum_k a_k cos(w_k d) + b_k sin(w_k d) (geometric frequencies
    w_k), which splits as u(s) = [a cos(w s) - b sin(w s), a sin(w s) + b cos(w s)] and v(e) = [cos(w e),
    sin(w e)] by the angle-difference identities: it rides in the pair channels with no change to the
    span search. Starts at f = 0.

    Example: u, v = SpanLengthPrior()(length=384, device="cpu")   # (384, 32) each; (u[s] * v[e]).sum() = f(e - s)
    """

    def __init__(self, frequencies: int = LENGTH_FREQUENCIES):
        super().__init__()
        self.coef = nn.Parameter(torch.zeros(2, frequencies))  # a_k, b_k

    def frequencies(self, device) -> torch.Tensor:
        return math.pi * 2.0 ** (-torch.arange(self.coef.shape[1], device=device, dtype=torch.float32) / 2)

    def forward(self, length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        angle = torch.arange(length, device=device, dtype=torch.float32)[:, None] * self.frequencies(device)
        cos, sin = angle.cos(), angle.sin()
        a, b = self.coef.float()
        return torch.cat([a * cos - b * sin, a * sin + b * cos], -1), torch.cat([cos, sin], -1)

    def score(self, d: torch.Tensor) -> torch.Tensor:
        """f(d) directly (for reports and tests)."""
        angle = d.float()[..., None] * self.frequencies(d.device)
        return (self.coef[0] * angle.cos() + self.coef[1] * angle.sin()).sum(-1)


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
        if getattr(config, "span_length_prior", False):
            self.length_head = SpanLengthPrior()
        self.post_init()

    def _init_weights(self, module):
        if module is getattr(self, "pair_head", None):
            # Start projections at unit scale on standardised features, end projections at zero: the pair
            # term starts at 0 and both halves get gradients once the end half moves (as LoRA's B = 0).
            with torch.no_grad():
                nn.init.normal_(module.weight[:PAIR_RANK], std=module.in_features ** -0.5)
                nn.init.zeros_(module.weight[PAIR_RANK:])
        elif isinstance(module, SpanLengthPrior):
            nn.init.zeros_(module.coef)
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
        if hasattr(self, "pair_head") or hasattr(self, "length_head"):
            logits = torch.cat([logits, self._pair_channels(hidden)], dim=-1)
        return SpanOutput(logits=logits)

    def _pair_channels(self, hidden):
        """(batch, 1 + length, 2 * width): the pair term's u then v channels (bilinear projections, then the
        length prior's features), zero at the null slot: "no answer" gets no pair term."""
        us, vs = [], []
        if hasattr(self, "pair_head"):
            u, v = (self.pair_head(hidden).float() * PAIR_RANK ** -0.25).chunk(2, dim=-1)  # u . v carries 1 / sqrt(rank)
            us.append(u)
            vs.append(v)
        if hasattr(self, "length_head"):
            prior_u, prior_v = self.length_head(hidden.shape[1], hidden.device)
            us.append(prior_u.expand(hidden.shape[0], -1, -1))
            vs.append(prior_v.expand(hidden.shape[0], -1, -1))
        pair = torch.cat(us + vs, dim=-1)
        return torch.cat([torch.zeros_like(pair[:, :1]), pair], dim=1)


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
