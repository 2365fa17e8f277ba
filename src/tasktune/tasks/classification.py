"""Text classification, two methods (`model.method`):
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

from tasktune.errors import UserError
from tasktune.metrics.classification import classification_metrics
from tasktune.tasks import label_scoring as ls

CONTENT_FREE = "N/A"  # the content-free input of contextual calibration


class Classification:
    name = "classification"
    required_columns = ["text", "label"]
    optional_columns = ["text_pair", "id"]
    padding_side = "right"
    label_columns = ["label"]
    group_key = None

    def __init__(self):
        self._cands = None  # label-word token ids, built once per tokenizer

    def _candidates(self, tokenizer, cfg, state):
        if self._cands is None:
            self._cands = ls.candidates(tokenizer, state["labels"], cfg.task.verbalizer)
        return self._cands

    def head_modules(self, cfg):
        # transformers names the sequence-classification head `classifier` in encoders, `score` in decoders.
        return [] if cfg.model.method == "label_scoring" else ["classifier", "score"]

    def stratify_key(self, row: dict):
        return row.get("label")

    def setup(self, train_rows: list[dict], cfg) -> dict:
        counts = Counter(str(r["label"]) for r in train_rows)
        labels = cfg.task.labels or sorted(counts, key=_label_order)
        if len(labels) < 2:
            raise UserError(f"task.labels: classification needs at least 2 labels, the training data has {labels}")
        _check_verbalizer(cfg, labels)
        return {"labels": labels, "label_counts": {lab: counts.get(lab, 0) for lab in labels}}

    def row_problem(self, row, state, labelled=True):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            return "empty or missing text; fill it in or remove the row"
        if not labelled:
            return None
        label = row.get("label")
        if label is None or str(label).strip() == "":
            return "empty label; every training/eval row needs one"
        labels = state["labels"] if state else None
        if labels is not None and str(label) not in labels:
            return f"label '{label}' is not in the label set {sorted(labels)}; fix the row or add it to task.labels"
        return None

    def state_from_model(self, path: str, cfg) -> dict:
        """The label set of a model trained elsewhere: config's id2label, or task.labels / the verbalizer."""
        import json
        from pathlib import Path

        if cfg.model.method == "label_scoring":
            labels = cfg.task.labels or list(cfg.task.verbalizer)
            _check_verbalizer(cfg, labels)
            return {"labels": labels, "label_counts": {}}
        config = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
        id2label = config.get("id2label") or {}
        if len(id2label) < 2:
            raise UserError(f"model '{path}' has no classification labels in config.json (id2label); "
                            "fine-tune it with `tasktune train` first, or use model.method=label_scoring")
        labels = [id2label[k] for k in sorted(id2label, key=int)]
        return {"labels": labels, "label_counts": {}}

    def build_model(self, path, cfg, state, for_training=True):
        from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

        from tasktune.models.loading import load_tokenizer, torch_dtype
        from tasktune.models.peft_adapters import load_model

        labels = state["labels"]
        scoring = cfg.model.method == "label_scoring"
        tok = load_tokenizer(path, "left" if scoring else self.padding_side)

        def loader(p, **kwargs):
            if scoring:
                return AutoModelForCausalLM.from_pretrained(p, dtype=torch_dtype(cfg.model.dtype), **kwargs)
            model = AutoModelForSequenceClassification.from_pretrained(
                p, num_labels=len(labels), id2label=dict(enumerate(labels)),
                label2id={lab: i for i, lab in enumerate(labels)}, dtype=torch_dtype(cfg.model.dtype), **kwargs)
            # Decoders classify from the last non-pad token and must know which id is padding.
            model.config.pad_token_id = tok.pad_token_id
            return model

        # SEQ_CLS makes peft train and save the new classification head in full beside the adapter.
        return load_model(path, loader, cfg, "CAUSAL_LM" if scoring else "SEQ_CLS", for_training), tok

    def prepare(self, rows, tokenizer, cfg, state):
        index = {lab: i for i, lab in enumerate(state["labels"])}
        if cfg.model.method == "label_scoring":
            width = self._candidates(tokenizer, cfg, state).width
            feats = [{"prompt_ids": ls.prompt_ids(tokenizer, cfg.task.prompt, r["text"], cfg.model.max_length, width)}
                     for r in rows]
            for f, r in zip(feats, rows):
                if r.get("label") is not None:
                    f["labels"] = index[str(r["label"])]
            return feats
        pairs = [r.get("text_pair") for r in rows] if any(r.get("text_pair") for r in rows) else None
        enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=cfg.model.max_length)
        feats = [{k: enc[k][i] for k in enc} for i in range(len(rows))]
        for f, r in zip(feats, rows):
            if r.get("label") is not None:
                f["labels"] = index[str(r["label"])]
        return feats

    def collator(self, tokenizer, cfg, state):
        if cfg.model.method == "label_scoring":
            return ls.LabelScoringCollator(tokenizer.pad_token_id, self._candidates(tokenizer, cfg, state))
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer)

    def scores(self, cfg, state):
        """Model logits -> (batch, labels) scores: the head's logits, or the label words' log-probabilities."""
        if cfg.model.method != "label_scoring":
            return lambda logits: logits.float()
        return lambda logits: ls.label_scores(logits, self._cands, len(state["labels"]), cfg.task.label_score)

    def preprocess_logits(self, cfg, state):
        """Trainer preprocess_logits_for_metrics: keep (batch, labels) scores, not vocabulary-wide logits."""
        to_scores = self.scores(cfg, state)
        return lambda logits, labels: to_scores(logits)

    def loss(self, cfg, state):
        import torch
        import torch.nn.functional as F

        weights = _class_weights(cfg.train.class_weights, state)
        smoothing = cfg.train.label_smoothing
        to_scores = self.scores(cfg, state)

        def compute_loss(outputs, labels, num_items_in_batch=None):
            logits = to_scores(outputs["logits"])
            w = None if weights is None else torch.tensor(weights, device=logits.device)
            loss = F.cross_entropy(logits, labels, weight=w, label_smoothing=smoothing, reduction="sum")
            # Trainer treats a compute_loss_func loss as already scaled for gradient accumulation:
            # divide by the items of the whole accumulated batch when it tells us that number.
            return loss / (num_items_in_batch if num_items_in_batch else labels.numel())

        return compute_loss

    def input_columns(self, state):
        return ["text"], ["text_pair", "id", "label"]

    def compute_metrics(self, cfg, state, rows=None, features=None):
        labels = state["labels"]

        def compute(eval_pred):
            pred = eval_pred.predictions.argmax(-1).tolist()
            m = classification_metrics(eval_pred.label_ids.tolist(), pred, labels)
            return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"]}

        return compute

    def predict(self, model, tokenizer, rows, cfg, state, batch_size=32):
        from tasktune.engine.inference import batched_outputs

        labels = state["labels"]
        to_scores = self.scores(cfg, state)
        feats = self.prepare([{k: v for k, v in r.items() if k != "label"} for r in rows], tokenizer, cfg, state)
        probs = batched_outputs(model, feats, self.collator(tokenizer, cfg, state),
                                lambda logits: to_scores(logits).softmax(-1), batch_size, bf16=cfg.train.bf16)
        out = []
        for row, p in zip(rows, probs):
            best = max(range(len(labels)), key=p.__getitem__)
            pred = {"id": row.get("id"), "text": row["text"], "label": labels[best],
                    "probs": {lab: round(x, 6) for lab, x in zip(labels, p)}}
            if row.get("label") is not None:
                pred["gold"] = str(row["label"])
            out.append(pred)
        return out

    def metrics(self, predictions, rows, state):
        index = {lab: i for i, lab in enumerate(state["labels"])}
        gold = [index[str(r["label"])] for r in rows]
        pred = [index[p["label"]] for p in predictions]
        return classification_metrics(gold, pred, state["labels"])

    def fit_thresholds(self, predictions, rows, state):
        raise UserError("classification has no decision threshold to tune; --tune-null-threshold is for "
                        "extractive_qa runs")

    def zero_shot(self, path, rows, cfg, state, batch_size=16) -> dict[str, list[dict]]:
        """Untrained label scoring with model `path` and the config's prompt, plain and calibrated.

        Calibrated (contextual calibration): each label's probability is divided by its probability
        on the content-free input "N/A", then renormalised. {} when the config has no prompt/verbalizer.
        """
        if not (cfg.task.prompt and cfg.task.verbalizer):
            return {}
        model_cfg = cfg.model.model_copy(update={"name": path, "method": "label_scoring", "lora": None,
                                                  "quantization": None})
        zcfg = cfg.model_copy(update={"model": model_cfg})
        scorer = Classification()
        model, tok = scorer.build_model(path, zcfg, state, for_training=False)
        from tasktune.models.loading import to_device

        model = to_device(model)
        plain = scorer.predict(model, tok, rows, zcfg, state, batch_size)
        prior = scorer.predict(model, tok, [{"id": "content-free", "text": CONTENT_FREE}], zcfg, state, 1)[0]["probs"]
        calibrated = []
        for p in plain:
            raw = {lab: p["probs"][lab] / max(prior[lab], 1e-12) for lab in state["labels"]}
            total = sum(raw.values())
            probs = {lab: round(v / total, 6) for lab, v in raw.items()}
            calibrated.append({**p, "label": max(probs, key=probs.get), "probs": probs})
        return {"zero_shot": plain, "zero_shot_calibrated": calibrated}

    def baselines(self, rows, state):
        # A model trained elsewhere has no training counts: fall back to the rows' own (said in the name).
        counts = state["label_counts"] or Counter(str(r["label"]) for r in rows)
        majority = max(state["labels"], key=lambda lab: counts.get(lab, 0))
        probs = {lab: float(lab == majority) for lab in state["labels"]}
        return {"majority": [{"id": r.get("id"), "text": r["text"], "label": majority, "probs": probs}
                             for r in rows]}


def _check_verbalizer(cfg, labels: list[str]) -> None:
    if cfg.model.method != "label_scoring":
        return
    missing = [lab for lab in labels if lab not in cfg.task.verbalizer]
    if missing:
        raise UserError(f"task.verbalizer has no word for label(s) {missing}; add e.g. "
                        f"task.verbalizer.{missing[0]}=<word>")


def _label_order(label: str):
    # Numeric labels sort as numbers (2 before 10), others alphabetically.
    return (0, float(label), "") if label.lstrip("-").replace(".", "", 1).isdigit() else (1, 0.0, label)


def _class_weights(setting, state) -> list[float] | None:
    """Per-label loss weights from train.class_weights: None, 'balanced' or {label: weight}."""
    labels, counts = state["labels"], state["label_counts"]
    if setting is None:
        return None
    if setting == "balanced":
        total = sum(counts.values())
        return [total / (len(labels) * max(counts.get(lab, 0), 1)) for lab in labels]
    unknown = set(setting) - set(labels)
    if unknown:
        raise UserError(f"train.class_weights: unknown label(s) {sorted(unknown)}; labels are {labels}")
    return [float(setting.get(lab, 1.0)) for lab in labels]
