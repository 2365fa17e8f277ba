"""Text classification, two methods (`task.method`):
- head: a new sequence-classification head on any backbone transformers gives one (encoders, decoders);
- label_scoring: a causal LM scores each label's words after a prompt, no new weights
  (`tasks/label_scoring.py`); untrained, it is the zero-shot baseline.

Data contract: required `text` and `label`; optional `text_pair` (a second segment, e.g. for
sentence pairs) and `id`. Labels are compared as text, so 0/1 and "neg"/"pos" both work.
Example row: {"id": "r1", "text": "房间很干净，服务也好", "label": "positive"}

Loss: cross-entropy over the labels' scores (head logits or label-word scores) with optional class
weights and label smoothing, computed here so both apply to either method. Predictions carry every
label's probability.
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import Field, field_validator

from tasktune.config import TaskSettings
from tasktune.errors import UserError
from tasktune.metrics.classification import classification_metrics
from tasktune.tasks import label_scoring as ls
from tasktune.tasks.protocol import RowError

CONTENT_FREE = "N/A"  # the content-free input of contextual calibration
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "logits_to_keep", "use_cache")


class ClassificationSettings(TaskSettings):
    name: Literal["classification"] = "classification"
    method: Literal["head", "label_scoring"] = Field(
        "head", description="head: a new classification head on the backbone; label_scoring: a causal LM scores "
        "each label's word after task.prompt (no new weights).")
    labels: list[str] | None = Field(
        None, description="Label set in a fixed order; inferred (sorted) from the training data when absent.")
    prompt: str | None = Field(
        None, description="label_scoring prompt with {text}, e.g. '评论：{text}\\n情感（正面或负面）：'.")
    verbalizer: dict[str, str | list[str]] | None = Field(
        None, description="label_scoring: label -> word (or list of words) the LM should say, e.g. {positive: 正面}.")
    label_score: Literal["sum", "mean"] = Field(
        "sum", description="label_scoring: a word's score is the sum or mean of its tokens' log-probabilities.")
    pooling: Literal["model", "mean", "last"] = Field(
        "model", description="head: what the head reads. model: transformers' own head (an encoder's [CLS], a "
        "decoder's last real token; exports as a plain transformers folder); mean / last: tasktune's pooled head "
        "over the mean of the real tokens or the last one (mean suits model.attention bidirectional).")
    standardize: bool = Field(
        False, description="head with pooling mean/last: standardise each hidden dimension before the head "
        "(measured on the first training batch; gemma's final norm makes a few dimensions ~300x louder).")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None, description="Loss weight per label: 'balanced' (inverse frequency) or {label: weight}.")

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _keys_as_text(cls, v):
        return None if v is None else {str(k): w for k, w in v.items()}

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, v):
        # YAML reads 0/1 labels as ints; data files give text: compare both as text.
        return None if v is None else [str(x) for x in v]

    def check(self, cfg) -> str | None:
        if cfg.train.packing and self.method != "label_scoring":
            return "train.packing works with task.method label_scoring (a head reads each row's last token)"
        if self.method == "label_scoring" and self.pooling != "model":
            return "task.pooling applies to task.method head (label scoring reads the next-token probabilities)"
        if self.standardize and self.pooling == "model":
            return "task.standardize needs task.pooling mean or last (tasktune's pooled head); drop one of them"
        if self.method == "label_scoring":
            if cfg.model.attention != "causal":
                return ("task.method label_scoring reads next-token probabilities: it needs model.attention causal "
                        "(bidirectional suits task.method head)")
            if not self.prompt or "{text}" not in self.prompt:
                return "task.method label_scoring needs task.prompt containing {text}"
            if not self.verbalizer:
                return "task.method label_scoring needs task.verbalizer (label -> word)"
        return None


class Classification:
    """Text classification by a new head or by label scoring (zero-shot baselines included)."""

    name = "classification"
    Settings = ClassificationSettings
    required_columns = ["text", "label"]
    optional_columns = ["text_pair", "id"]
    label_columns = ["label"]
    summary_metrics = ("accuracy", "macro_f1")
    lower_is_better = ()
    metric_names = ("accuracy", "macro_f1")

    # --- data ---------------------------------------------------------------------------------
    def parse_row(self, row, cfg, state, labelled=True):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise RowError("empty or missing text; fill it in or remove the row")
        if not labelled:
            return dict(row)
        label = row.get("label")
        if label is None or str(label).strip() == "":
            raise RowError("empty label; every training/eval row needs one")
        labels = state["labels"] if state else cfg.task.labels
        if labels is not None and str(label) not in labels:
            raise RowError(f"label '{label}' is not in the label set {sorted(labels)}; fix the row or add it to "
                           "task.labels")
        return {**row, "label": str(label)}

    def split_keys(self, row):
        return row.get("label"), None

    def setup(self, train_rows, cfg):
        counts = Counter(str(r["label"]) for r in train_rows)
        labels = cfg.task.labels or sorted(counts, key=_label_order)
        if len(labels) < 2:
            raise UserError(f"task.labels: classification needs at least 2 labels, the training data has {labels}")
        _check_verbalizer(cfg, labels)
        return {"labels": labels, "label_counts": {lab: counts.get(lab, 0) for lab in labels}}

    def state_from_model(self, path, cfg, rows):
        """The label set of a model trained elsewhere: config's id2label, or task.labels / the verbalizer."""
        import json
        from pathlib import Path

        if cfg.task.method == "label_scoring":
            labels = cfg.task.labels or list(cfg.task.verbalizer)
            _check_verbalizer(cfg, labels)
            return {"labels": labels, "label_counts": {}}
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        if len(id2label) < 2:
            raise UserError(f"model '{path}' has no classification labels in config.json (id2label); "
                            "fine-tune it with `tasktune train` first, or use task.method=label_scoring")
        return {"labels": [id2label[k] for k in sorted(id2label, key=int)], "label_counts": {}}

    def gold(self, row):
        return str(row["label"])

    def input_columns(self, state):
        return ["text"], ["text_pair", "id", "label"]

    def text_row(self, text, extra):
        if extra:
            raise UserError(f"predict --{next(iter(extra))} does not apply to classification runs")
        return {"id": "text", "text": text}

    # --- model and training -------------------------------------------------------------------
    def head_modules(self, cfg):
        # transformers names the sequence-classification head `classifier` in encoders, `score` in decoders;
        # tasktune's pooled head has its standardiser beside `score`.
        return [] if cfg.task.method == "label_scoring" else ["classifier", "score", "head_norm"]

    def build_model(self, path, cfg, state, for_training=True):
        labels = state["labels"]
        if cfg.task.method == "head" and cfg.task.pooling == "model":
            # A folder exported from a pooled-head run (`tasktune eval --model exported/`) keeps its head.
            saved = _saved_pooling(path)
            if saved:
                task = cfg.task.model_copy(update={"pooling": saved[0], "standardize": saved[1]})
                cfg = cfg.model_copy(update={"task": task})
        if cfg.task.method == "head" and cfg.task.pooling != "model":
            return _pooled_head(path, cfg, labels, for_training)
        return ls.scorer_or_head(path, cfg, for_training, cfg.task.method == "label_scoring",
                                 num_labels=len(labels), id2label=dict(enumerate(labels)),
                                 label2id={lab: i for i, lab in enumerate(labels)})

    def prepare(self, rows, tokenizer, cfg, state):
        index = {lab: i for i, lab in enumerate(state["labels"])}
        if cfg.task.method == "label_scoring":
            width = ls.candidates(tokenizer, state["labels"], cfg.task.verbalizer).width
            feats = [{"prompt_ids": ls.prompt_ids(tokenizer, cfg.task.prompt, r["text"], cfg.model.max_length, width)}
                     for r in rows]
        else:
            pairs = [r.get("text_pair") for r in rows] if any(r.get("text_pair") for r in rows) else None
            enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=cfg.model.max_length)
            feats = [{k: enc[k][i] for k in enc} for i in range(len(rows))]
        for f, r in zip(feats, rows):
            if r.get("label") is not None:
                f["labels"] = index[str(r["label"])]
        return feats

    def collator(self, tokenizer, cfg, state, packed: bool | None = None):
        """The training collator (packed with train.packing); predict asks for `packed=False`: sorted
        inference batches hardly pad, and a pack's attention grows with its square."""
        if cfg.task.method == "label_scoring":
            return ls.LabelScoringCollator(tokenizer.pad_token_id,
                                           ls.candidates(tokenizer, state["labels"], cfg.task.verbalizer),
                                           packed=cfg.train.packing if packed is None else packed)
        return _PaddingCollator(tokenizer)

    def _scores(self, model, batch, cfg, state):
        """(batch, labels) scores: the head's logits, or the label words' log-probabilities."""
        if "cont_ids" in batch:  # words of several tokens continuing each prompt read once
            cand = ls.shared_prefix_logprobs(model, batch, cfg.task.label_score)
            return ls.per_label(cand.view(len(batch["input_ids"]), -1), batch["cand_owner"], len(state["labels"]))
        logits = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits
        if cfg.task.method != "label_scoring":
            return logits.float()
        return ls.label_scores(logits, batch["cand_ids"], batch["cand_owner"], len(state["labels"]),
                               cfg.task.label_score)

    def compute_loss(self, model, batch, cfg, state):
        import torch
        import torch.nn.functional as F

        scores = self._scores(model, batch, cfg, state)
        weights = _class_weights(cfg.task.class_weights, state)
        w = None if weights is None else torch.tensor(weights, device=scores.device)
        return F.cross_entropy(scores, batch["labels"], weight=w, label_smoothing=cfg.train.label_smoothing,
                               reduction="sum")

    # --- inference and metrics ----------------------------------------------------------------
    def predict(self, model, tokenizer, rows, cfg, state, batch_size=32):
        from tasktune.engine.inference import batched_outputs

        labels = state["labels"]
        feats = self.prepare([{k: v for k, v in r.items() if k != "label"} for r in rows], tokenizer, cfg, state)
        probs = batched_outputs(model, feats, self.collator(tokenizer, cfg, state, packed=False),
                                lambda m, batch: self._scores(m, batch, cfg, state).softmax(-1), batch_size,
                                bf16=cfg.train.bf16)
        out = []
        for row, p in zip(rows, probs):
            best = max(range(len(labels)), key=p.__getitem__)
            out.append({"id": row.get("id"), "text": row["text"], "label": labels[best],
                        "probs": {lab: round(x, 6) for lab, x in zip(labels, p)}})
        return out

    def row_scores(self, predictions, state):
        index = {lab: i for i, lab in enumerate(state["labels"])}
        return [(index[p["gold"]], index[p["label"]]) for p in predictions]

    def aggregate(self, scores, state):
        m = classification_metrics([g for g, _ in scores], [p for _, p in scores], state["labels"])
        return {k: m[k] for k in self.metric_names}

    def metrics(self, predictions, state):
        scores = self.row_scores(predictions, state)
        return classification_metrics([g for g, _ in scores], [p for _, p in scores], state["labels"])

    def write_plots(self, metrics, state, out_dir):
        from tasktune.plots import plot_confusion

        plot_confusion(metrics["confusion_matrix"], state["labels"], out_dir / "confusion_matrix.png")

    def baselines(self, rows, state):
        # A model trained elsewhere has no training counts: fall back to the rows' own.
        counts = state["label_counts"] or Counter(str(r["label"]) for r in rows)
        majority = max(state["labels"], key=lambda lab: counts.get(lab, 0))
        probs = {lab: float(lab == majority) for lab in state["labels"]}
        return {"majority": [{"id": r.get("id"), "text": r["text"], "label": majority, "probs": probs}
                             for r in rows]}

    def zero_shot(self, path, rows, cfg, state, batch_size=16):
        """Untrained label scoring with model `path` and the config's prompt, plain and calibrated.

        Calibrated (contextual calibration): each label's probability is divided by its probability
        on the content-free input "N/A", then renormalised. {} when the config has no prompt/verbalizer.
        """
        if not (cfg.task.prompt and cfg.task.verbalizer):
            return {}
        import torch

        from tasktune.models.loading import to_device

        zcfg = cfg.model_copy(update={
            "model": cfg.model.model_copy(update={"name": path, "lora": None, "quantization": None}),
            "task": cfg.task.model_copy(update={"method": "label_scoring"})})
        model, tok = self.build_model(path, zcfg, state, for_training=False)
        model = to_device(model)
        plain = self.predict(model, tok, rows, zcfg, state, batch_size)
        prior = self.predict(model, tok, [{"id": "content-free", "text": CONTENT_FREE}], zcfg, state, 1)[0]["probs"]
        labels = state["labels"]
        logp = torch.tensor([[p["probs"][lab] for lab in labels] for p in plain]).clamp(min=1e-12).log()
        prior_logp = torch.tensor([[prior[lab] for lab in labels]]).clamp(min=1e-12).log()
        fixed = ls.calibrate(logp, prior_logp).softmax(-1).tolist()
        calibrated = []
        for p, q in zip(plain, fixed):
            probs = {lab: round(v, 6) for lab, v in zip(labels, q)}
            calibrated.append({**p, "label": max(probs, key=probs.get), "probs": probs})
        return {"zero_shot": plain, "zero_shot_calibrated": calibrated}


class _PaddingCollator:
    """transformers' dynamic padding, plus the item count the engine normalises the loss by."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features):
        batch = self.pad(features)
        batch["loss_items"] = len(features)
        return batch


def _check_verbalizer(cfg, labels: list[str]) -> None:
    if cfg.task.method != "label_scoring":
        return
    missing = [lab for lab in labels if lab not in cfg.task.verbalizer]
    if missing:
        raise UserError(f"task.verbalizer has no word for label(s) {missing}; add e.g. "
                        f"task.verbalizer.{missing[0]}=<word>")


def _pooled_head(path: str, cfg, labels: list[str], for_training: bool):
    """(model, tokenizer): tasktune's pooled head (`models/pooled_head.py`) on any backbone, right-padded."""
    from tasktune.models.heads import load_with_head
    from tasktune.models.loading import load_tokenizer
    from tasktune.models.pooled_head import HEADS, pooled_model_class

    tok = load_tokenizer(path, "right")
    values = {"cls_pooling": cfg.task.pooling, "cls_standardize": cfg.task.standardize, "num_labels": len(labels),
              "id2label": dict(enumerate(labels)), "label2id": {lab: i for i, lab in enumerate(labels)},
              "pad_token_id": tok.pad_token_id}
    return load_with_head(path, cfg, pooled_model_class, values, HEADS, for_training), tok


def _saved_pooling(path: str) -> tuple[str, bool] | None:
    """(pooling, standardize) of a folder saved with tasktune's pooled head, from its config.json; else None."""
    import json
    from pathlib import Path

    config = Path(path) / "config.json"
    if not config.is_file():
        return None
    saved = json.loads(config.read_text(encoding="utf-8"))
    return (saved["cls_pooling"], bool(saved.get("cls_standardize"))) if "cls_pooling" in saved else None


def _label_order(label: str):
    # Numeric labels sort as numbers (2 before 10), others alphabetically.
    return (0, float(label), "") if label.lstrip("-").replace(".", "", 1).isdigit() else (1, 0.0, label)


def _class_weights(setting, state) -> list[float] | None:
    """Per-label loss weights from task.class_weights: None, 'balanced' or {label: weight}."""
    labels, counts = state["labels"], state["label_counts"]
    if setting is None:
        return None
    if setting == "balanced":
        total = sum(counts.values())
        return [total / (len(labels) * max(counts.get(lab, 0), 1)) for lab in labels]
    unknown = set(setting) - set(labels)
    if unknown:
        raise UserError(f"task.class_weights: unknown label(s) {sorted(unknown)}; labels are {labels}")
    return [float(setting.get(lab, 1.0)) for lab in labels]
