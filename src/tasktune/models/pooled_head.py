"""A sequence-classification head that pools every real token, on any backbone `AutoModel` knows.

transformers' *ForSequenceClassification heads read one position: an encoder's [CLS] (through its
pooler) or a decoder's last real token. A decoder under bidirectional attention (`model.attention`)
has every token see the whole text, and averaging them is the embedding models' usual pooling.
This head is what `task.pooling` / `task.standardize` of the classification family ask for:

- `config.cls_pooling`: `mean` of the real tokens' states, or the `last` real token's state
  (right padding);
- `config.cls_standardize`: the states standardised per dimension first (`models/heads`:
  gemma's final norm makes a few dimensions ~300x louder than the rest);
- `score`: a linear layer to `config.num_labels` logits, zero at the start (every label equally
  likely, loss log(labels)), trained in full beside LoRA adapters (`HEADS`).
Both settings are saved in config.json, so a run's best/ folder reloads the same head. The class is
tasktune's: plain transformers cannot load a folder with this head (`AutoModelForSequenceClassification`
would build its own last-token head and drop this one), so `export` says so in tasktune.json.

Example:
    config.cls_pooling, config.cls_standardize, config.num_labels = "mean", True, 2
    model = pooled_model_class(config).from_pretrained(path, config=config)
    model(input_ids=ids, attention_mask=mask).logits.shape   # (batch, 2)
"""

from __future__ import annotations

from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tasktune.models.heads import FeatureStandardizer, HeadMixin, backbone_hidden, family_head_class, pooled

HEADS = ["head_norm", "score"]  # trained in full beside LoRA adapters (modules_to_save)
POOLINGS = ("last", "mean")


class _PooledClassification(HeadMixin):
    """Mixin put in front of a family's PreTrainedModel by `pooled_model_class`."""

    zero_heads = ("score",)

    def __init__(self, config):
        from transformers import AutoModel

        super().__init__(config)
        setattr(self, self.base_model_prefix, AutoModel.from_config(config))
        self.pooling = getattr(config, "cls_pooling", "mean")
        # Always built (so LoRA's modules_to_save finds it), used only when asked.
        self.standardize = getattr(config, "cls_standardize", False)
        self.head_norm = FeatureStandardizer(config.hidden_size)
        self.score = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
        hidden, attention_mask = backbone_hidden(self, input_ids, attention_mask, token_type_ids)
        if self.standardize:  # (under LoRA, head_norm is peft's wrapper of the standardiser)
            hidden = self.head_norm(hidden, attention_mask)
        return SequenceClassifierOutput(logits=self.score(pooled(hidden, attention_mask, self.pooling)))


def pooled_model_class(config) -> type:
    """The pooled classification model class for `config`'s family, e.g. Gemma3TextForPooledClassification."""
    return family_head_class(config, _PooledClassification, "ForPooledClassification", HEADS)
