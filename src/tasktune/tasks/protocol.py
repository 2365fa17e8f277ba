"""The Task protocol: the only surface through which task families differ.

The engine, the run folder, config, data reading, metrics history and plots are written once;
a task supplies what is specific to it. `state` is a small JSON-able dict the task derives from
the training data (e.g. the label set); it is stored in best/tasktune.json so that eval and
predict can rebuild the task with no other input.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class Task(Protocol):
    name: str
    required_columns: list[str]           # task fields every training/eval row must have
    optional_columns: list[str]           # fields used when present (e.g. id)
    padding_side: str                     # tokenizer padding side this task needs

    label_columns: list[str]              # the required columns that only labelled rows have
    group_key: Callable[[dict], Any] | None  # rows with one key stay on one side of a split (None: free)

    def head_modules(self, cfg) -> list[str]:
        """Names of the modules the task adds to the backbone (trained at train.head_learning_rate)."""

    def stratify_key(self, row: dict) -> Any:
        """Group key for stratified splits (e.g. the label); None when the task has none."""

    def setup(self, train_rows: list[dict], cfg) -> dict:
        """Derive the task state (labels, counts...) from training rows and config."""

    def row_problem(self, row: dict, state: dict | None, labelled: bool) -> str | None:
        """What is wrong with one row and how to fix it, or None; `state` None = label set not known yet."""

    def state_from_model(self, path: str, cfg) -> dict:
        """Task state read from a model trained elsewhere (for `eval --model`)."""

    def build_model(self, path: str, cfg, state: dict, for_training: bool) -> tuple[Any, Any]:
        """(model, tokenizer) loaded from `path`."""

    def prepare(self, rows: list[dict], tokenizer, cfg, state: dict) -> list[dict]:
        """Raw rows -> model features (tensors-to-be, with labels when rows have them)."""

    def collator(self, tokenizer, cfg, state: dict) -> Callable:
        """Batch builder for `prepare`'s features."""

    def loss(self, cfg, state: dict) -> Callable | None:
        """Trainer `compute_loss_func`, or None to use the model's own loss."""

    def preprocess_logits(self, cfg, state: dict) -> Callable | None:
        """Trainer `preprocess_logits_for_metrics`: shrink eval logits before they are gathered."""

    def input_columns(self, state: dict) -> tuple[list[str], list[str]]:
        """(required, optional) columns of unlabelled rows for `predict --input`."""

    def compute_metrics(self, cfg, state: dict, rows: list[dict], features: list[dict]) -> Callable:
        """Trainer `compute_metrics` for evaluation during training on `rows` (prepared as `features`)."""

    def predict(self, model, tokenizer, rows: list[dict], cfg, state: dict, batch_size: int) -> list[dict]:
        """Raw rows -> readable predictions (one dict per row)."""

    def metrics(self, predictions: list[dict], rows: list[dict], state: dict) -> dict:
        """Final metrics of predictions against labelled rows."""

    def baselines(self, rows: list[dict], state: dict) -> dict[str, list[dict]]:
        """Predictions of trivial baselines (e.g. majority class) on `rows`, by name."""

    def fit_thresholds(self, predictions: list[dict], rows: list[dict], state: dict) -> tuple[dict, list[dict], dict]:
        """(new state, re-decided predictions, report) with decision thresholds fitted on labelled rows;
        raises UserError where the task has none to fit."""

    def zero_shot(self, path: str, rows: list[dict], cfg, state: dict, batch_size: int) -> dict[str, list[dict]]:
        """Predictions of an untrained model at `path` on `rows`, by name ({} when the task has none)."""
