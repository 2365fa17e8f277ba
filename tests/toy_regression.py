"""A toy third task family, written only to test the seam: text -> a number.

It plugs in with one registry line (`TASKS["regression"] = Regression`, done by the test) and no
edit to run.py, compare.py, config.py or data/. Data contract: required `text` and `target` (a
number); optional `id`. Example row: {"id": "r1", "text": "good good bad", "target": 1.0}
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasktune.config import TaskSettings
from tasktune.tasks.protocol import RowError


class RegressionSettings(TaskSettings):
    name: Literal["regression"] = "regression"
    scale: float = Field(1.0, gt=0, description="Targets are divided by this before training.")


class Regression:
    name = "regression"
    Settings = RegressionSettings
    required_columns = ["text", "target"]
    optional_columns = ["id"]
    label_columns = ["target"]
    summary_metrics = ("mse",)
    metric_names = ("mse", "mae")
    lower_is_better = ("mse", "mae")

    def parse_row(self, row, cfg, state, labelled=True):
        if not str(row.get("text") or "").strip():
            raise RowError("empty text")
        if not labelled:
            return dict(row)
        try:
            return {**row, "target": float(row["target"])}
        except (TypeError, ValueError):
            raise RowError(f"target {row.get('target')!r} is not a number") from None

    def split_keys(self, row):
        return None, None

    def setup(self, train_rows, cfg):
        return {"mean": sum(r["target"] for r in train_rows) / len(train_rows)}

    def state_from_model(self, path, cfg, rows):
        return {"mean": 0.0}

    def gold(self, row):
        return row["target"]

    def text_row(self, text, extra):
        return {"id": "text", "text": text}

    def head_modules(self, cfg):
        return ["classifier"]

    def build_model(self, path, cfg, state, for_training=True):
        from transformers import AutoModelForSequenceClassification

        from tasktune.models.loading import load_tokenizer
        from tasktune.models.peft_adapters import load_model

        def loader(p, **kw):
            return AutoModelForSequenceClassification.from_pretrained(p, num_labels=1, **kw)

        return load_model(path, loader, cfg, "SEQ_CLS", for_training), load_tokenizer(path)

    def prepare(self, rows, tokenizer, cfg, state):
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=cfg.model.max_length)
        feats = [{k: enc[k][i] for k in enc} for i in range(len(rows))]
        for f, r in zip(feats, rows):
            if "target" in r:
                f["target"] = r["target"] / cfg.task.scale
        return feats

    def collator(self, tokenizer, cfg, state):
        from transformers import DataCollatorWithPadding

        pad = DataCollatorWithPadding(tokenizer)

        def collate(feats):
            import torch

            batch = pad([{k: v for k, v in f.items() if k != "target"} for f in feats])
            if "target" in feats[0]:
                batch["target"] = torch.tensor([f["target"] for f in feats])
            batch["loss_items"] = len(feats)
            return batch

        return collate

    def _values(self, model, batch):
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]

    def compute_loss(self, model, batch, cfg, state):
        return ((self._values(model, batch) - batch["target"]) ** 2).sum()

    def predict(self, model, tokenizer, rows, cfg, state, batch_size=32):
        from tasktune.engine.inference import batched_outputs

        feats = self.prepare([{"text": r["text"]} for r in rows], tokenizer, cfg, state)
        values = batched_outputs(model, feats, self.collator(tokenizer, cfg, state),
                                 lambda m, b: self._values(m, b) * cfg.task.scale, batch_size)
        return [{"id": r.get("id"), "text": r["text"], "value": v} for r, v in zip(rows, values)]

    def row_scores(self, predictions, state):
        return [p["value"] - p["gold"] for p in predictions]

    def aggregate(self, scores, state):
        return {"mse": sum(e * e for e in scores) / len(scores), "mae": sum(abs(e) for e in scores) / len(scores)}

    def metrics(self, predictions, state):
        return self.aggregate(self.row_scores(predictions, state), state)

    def baselines(self, rows, state):
        return {"mean": [{"id": r.get("id"), "text": r["text"], "value": state["mean"]} for r in rows]}
