"""What tasktune adds to transformers.Trainer, as TrainerCallbacks shared by every task.

- HistoryCallback: metrics_history.json (every log and eval, with throughput), train.log lines,
  training_curves.png redrawn every N logging steps.
- EarlyStopping: stop on any eval metric with patience and min delta; its counters live in the
  checkpoint (ExportableState), so a resumed run keeps its patience.
- CompleteMarker: mark a checkpoint complete once all ranks wrote it.
Only the main process writes files.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState, ProgressCallback

from tasktune.atomic import write_json
from tasktune.engine.checkpoints import mark_complete
from tasktune.errors import UserError
from tasktune.plots import plot_curves

log = logging.getLogger("tasktune")
HISTORY = "metrics_history.json"
CURVES = "training_curves.png"


def read_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / HISTORY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []


def truncate_history(run_dir: str | Path, step: int) -> list[dict]:
    """Drop entries logged after `step` (a resumed run replays them) and rewrite the file."""
    kept = [h for h in read_history(run_dir) if h.get("step", 0) <= step]
    write_json(Path(run_dir) / HISTORY, kept)
    return kept


class HistoryCallback(TrainerCallback):
    def __init__(self, run_dir: str | Path, curves_every: int, history: list[dict] | None = None):
        self.run_dir = Path(run_dir)
        self.curves_every = curves_every
        self.history = list(history or [])
        self._last = None  # (time, step) of the previous training log, for throughput
        self._logs_since_plot = 0

    def on_train_begin(self, args, state, control, **kw):
        self._last = (time.time(), state.global_step)

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs:
            return
        entry = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), **logs,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if "loss" in logs and self._last:
            now, steps = time.time(), state.global_step - self._last[1]
            if steps > 0:
                batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
                entry["train_samples_per_s"] = round(steps * batch / max(now - self._last[0], 1e-9), 3)
            self._last = (now, state.global_step)
        self.history.append(entry)
        write_json(self.run_dir / HISTORY, self.history)
        shown = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in logs.items()
                          if not k.endswith(("_runtime", "_per_second")) and k != "epoch")
        log.info("step %d/%d  epoch %.2f  %s", state.global_step, state.max_steps, state.epoch or 0, shown)
        self._logs_since_plot += 1
        if self._logs_since_plot >= self.curves_every or "eval_loss" in logs:
            self._plot()

    def on_train_end(self, args, state, control, **kw):
        if state.is_world_process_zero:
            self._plot()

    def _plot(self):
        self._logs_since_plot = 0
        if self.history:
            plot_curves(self.history, self.run_dir / CURVES)


class QuietProgress(ProgressCallback):
    """Progress bars only: the stock callback also prints every log dict to stdout, which
    HistoryCallback already reports (and stdout is kept for a command's result)."""

    def on_log(self, args, state, control, logs=None, **kw):
        pass


class EarlyStopping(TrainerCallback, ExportableState):
    """Stop when `metric` has not improved by more than `min_delta` for `patience` evaluations."""

    def __init__(self, metric: str, patience: int, min_delta: float = 0.0, greater_is_better: bool = True,
                 best: float | None = None, bad_evals: int = 0):
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.greater_is_better = greater_is_better
        self.best, self.bad_evals = best, bad_evals

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        if self.metric not in (metrics or {}):
            known = ", ".join(sorted(k for k in metrics or {} if k.startswith("eval_")))
            raise UserError(f"train.early_stopping.metric '{self.metric}' is not reported; available: {known}")
        value = metrics[self.metric]
        gain = (value - self.best if self.greater_is_better else self.best - value) if self.best is not None else None
        if gain is None or gain > self.min_delta:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:
                log.info("early stopping: %s has not improved by more than %g for %d evaluations (best %.4g)",
                         self.metric, self.min_delta, self.patience, self.best)
                control.should_training_stop = True

    def state(self) -> dict:
        return {"args": {"metric": self.metric, "patience": self.patience, "min_delta": self.min_delta,
                         "greater_is_better": self.greater_is_better},
                "attributes": {"best": self.best, "bad_evals": self.bad_evals}}


class CompleteMarker(TrainerCallback):
    def on_save(self, args, state, control, **kw):
        from accelerate import PartialState

        # Every rank writes its own RNG state into the checkpoint: wait for all before marking it.
        PartialState().wait_for_everyone()
        if state.is_world_process_zero:
            mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}")


def greater_is_better(metric: str, task=None) -> bool:
    """Whether a higher `metric` is better: eval_loss and the task's `lower_is_better` metrics improve downwards."""
    return metric != "eval_loss" and metric.removeprefix("eval_") not in getattr(task, "lower_is_better", ())
