"""The Task protocol: the only surface through which task families differ.

The engine, the run folder, config, data reading, evaluation, comparison, metrics history and plots
are written once; a family supplies what is specific to it, in one file under `tasks/`. `state` is
a small JSON-able dict the task derives from the training data (a label set, fitted thresholds);
best/tasktune.json stores it, so eval and predict rebuild the task from the run folder alone.

Required members are in `Task`; the optional ones, in `OPTIONAL`, are looked up with `member()`
(a family that has no baseline simply does not define `baselines`). docs/architecture.md lists
which family uses which.

A minimal family (tests/toy_regression.py is a working one):

    class Regression:
        name = "regression"
        Settings = RegressionSettings            # its `task:` section, a TaskSettings subclass
        required_columns, optional_columns, label_columns = ["text", "target"], ["id"], ["target"]
        summary_metrics, metric_names, lower_is_better = ("mse",), ("mse", "mae"), ("mse", "mae")

        def parse_row(self, row, cfg, state, labelled): ...   # -> clean row, or raise RowError
        def setup(self, train_rows, cfg): return {}
        ...
"""

from __future__ import annotations

from typing import Any, Callable, Protocol


class RowError(ValueError):
    """A data row the task cannot use; the message says what is wrong and how to fix it."""


class Task(Protocol):
    name: str
    Settings: type                        # the pydantic model of the `task:` section (a TaskSettings)
    required_columns: list[str]           # fields every training/eval row must have
    optional_columns: list[str]           # fields used when present (e.g. id)
    label_columns: list[str]              # the required fields that only labelled rows have
    summary_metrics: tuple[str, ...]      # headline metrics: logs, baseline tables, `compare` intervals
    metric_names: tuple[str, ...]         # every scalar metric an evaluation reports (train.best_metric choices)
    lower_is_better: tuple[str, ...]      # those of metric_names that improve downwards (an error, a loss)

    # --- data ---------------------------------------------------------------------------------
    def parse_row(self, row: dict, cfg, state: dict | None, labelled: bool) -> dict:
        """The row as the task uses it (a new dict: normalised fields); raises RowError naming the fix.
        `state` is None while the training data's state is not known yet. Never mutates `row`."""

    def split_keys(self, row: dict) -> tuple[Any, Any]:
        """(stratum, group) for seeded splits: rows keep their stratum's share on both sides (e.g. the
        label); rows with one group stay on one side (e.g. a context). None for either means free."""

    def setup(self, train_rows: list[dict], cfg) -> dict:
        """The task state learnt from the training rows (labels, counts, language...)."""

    def state_from_model(self, path: str, cfg, rows: list[dict]) -> dict:
        """The state for a model trained elsewhere (`eval --model`), from its files, the config and `rows`."""

    def gold(self, row: dict) -> Any:
        """What a prediction of this labelled row is scored against (JSON-able); stored as `gold`."""

    # --- model and training -------------------------------------------------------------------
    def build_model(self, path: str, cfg, state: dict, for_training: bool) -> tuple[Any, Any]:
        """(model, tokenizer) loaded from `path`: the task's head on the backbone, LoRA per the config."""

    def head_modules(self, cfg) -> list[str]:
        """Names of the modules the task adds to the backbone (trained at train.head_learning_rate)."""

    def prepare(self, rows: list[dict], tokenizer, cfg, state: dict) -> list[dict]:
        """Labelled rows -> training features (lists of ints and numbers)."""

    def collator(self, tokenizer, cfg, state: dict) -> Callable[[list[dict]], dict]:
        """Features -> a batch of tensors. Every batch carries `loss_items`: how many items its loss sums."""

    def compute_loss(self, model, batch: dict, cfg, state: dict):
        """The SUM of the batch's item losses (a scalar tensor). The engine divides by the items of the
        whole accumulated (and distributed) batch, so accumulation and process count do not change it."""

    # --- inference and metrics ----------------------------------------------------------------
    def predict(self, model, tokenizer, rows: list[dict], cfg, state: dict, batch_size: int) -> list[dict]:
        """Rows -> readable predictions, one dict per row (with the row's `id`), in input order."""

    def row_scores(self, predictions: list[dict], state: dict) -> list:
        """Per-row material for the metrics, from predictions that carry `gold` (computed once)."""

    def aggregate(self, scores: list, state: dict) -> dict[str, float]:
        """Summary metrics from a list of `row_scores` entries (cheap: `compare` bootstraps it)."""

    def metrics(self, predictions: list[dict], state: dict) -> dict:
        """The full evaluation report of predictions carrying `gold`: `aggregate`'s metrics and details."""


# Optional members: name -> what it does (signature in the docstring of each family's method).
OPTIONAL = {
    "baselines": "baselines(rows, state) -> {name: predictions}: trivial baselines (majority, no answer)",
    "zero_shot": "zero_shot(path, rows, cfg, state, batch_size) -> {name: predictions}: an untrained model",
    "tune": "tune(predictions, rows, state) -> (state, predictions, report): fit decision thresholds "
            "(`eval --tune`), stored in best/tasktune.json",
    "text_row": "text_row(text, extra: dict) -> row: the row `predict --text` / `--interactive` builds",
    "input_columns": "input_columns(state) -> (required, optional): columns of `predict --input` rows "
                     "(default: required_columns minus label_columns)",
    "check_config": "check_config(cfg) -> str | None: a rule across config sections, as an error message",
    "before_training": "before_training(model, tokenizer, splits, cfg, run_dir) -> splits: work that needs the "
                       "model before training (mine hard negatives, retrieve open-book context); run once, by the "
                       "main process, its splits sent to the others",
    "after_training": "after_training(model, tokenizer, splits, cfg, run_dir, metrics): a stage after the final "
                      "evaluation (compare with the starting model)",
    "save_artifacts": "save_artifacts(model, tokenizer, cfg, state, folder): extra files for best/",
    "write_plots": "write_plots(metrics, state, out_dir): pictures of an evaluation (confusion matrix)",
    "inspect": "inspect(rows, tokenizer) -> dict: the task's view in `tasktune data inspect`",
    "write_submission": "write_submission(predictions, path): `predict --submission F` in a format the task's "
                        "community expects (multiple choice: Kaggle's id,prediction)",
}


def member(task, name: str) -> Callable | None:
    """The optional member `name` of `task`, or None when the family does not have it."""
    if name not in OPTIONAL:
        raise KeyError(f"'{name}' is not an optional Task member; see tasks.protocol.OPTIONAL")
    return getattr(task, name, None)
