"""`tasktune compare RUN...`: runs (and their baselines) on the same eval rows, with 95% intervals.

Reads each run's eval/<split>/predictions.jsonl and, once per name, the baselines saved beside it
(eval --baseline, baseline.after_training). Every method must cover the same row ids, and the runs
must be of one task family. The task scores each prediction once (`Task.row_scores`) and its
summary metrics (`Task.aggregate`) are recomputed on 1,000 seeded bootstrap resamples of the rows:
percentile intervals, for any family. With `against`, each method's difference from that one is given
with a PAIRED interval (the same resamples for both): the test of "better than the baseline" that
two overlapping separate intervals cannot settle.

Example: compare(["runs/a", "runs/b"], out="comparison.json")["methods"]["a"]["accuracy"]
         compare(["runs/a"], against="bm25")["differences"]["a"]["top1"]  # {"value": .., "ci95": [lo, hi]}
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tasktune.atomic import write_json
from tasktune.errors import UserError
from tasktune.metrics.bootstrap import bootstrap_values, paired_difference, percentile_interval, resamples
from tasktune.metrics.format import metric_line

log = logging.getLogger("tasktune")


def _read(path: Path) -> dict[str, dict]:
    return {p["id"]: p for p in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def _methods(runs: list[str], split: str) -> dict[str, dict[str, dict]]:
    methods: dict[str, dict[str, dict]] = {}
    for run in runs:
        folder = Path(run) / "eval" / split
        if not (folder / "predictions.jsonl").is_file():
            raise UserError(f"'{run}' has no eval/{split}/predictions.jsonl; run `tasktune eval {run}` first")
        methods[Path(run).name] = _read(folder / "predictions.jsonl")
        for path in sorted((folder / "baselines").glob("*.jsonl")):
            methods.setdefault(path.stem, _read(path))
    return methods


def _task_and_state(runs: list[str]):
    """The task family and state of the runs (one family for all), from their best/tasktune.json."""
    from tasktune.tasks import get_task

    metas = {}
    for run in runs:
        meta = Path(run) / "best" / "tasktune.json"
        if not meta.is_file():
            raise UserError(f"'{run}' is not a finished tasktune run (no best/tasktune.json)")
        metas[run] = json.loads(meta.read_text(encoding="utf-8"))
    families = {m["task"] for m in metas.values()}
    if len(families) > 1:
        raise UserError(f"compare takes runs of one task family; got {', '.join(sorted(families))}")
    return get_task(families.pop()), metas[runs[0]]["state"]


def compare(runs: list[str], split: str = "eval", out: str | None = None, samples: int = 1000,
            against: str | None = None) -> dict:
    """The task's summary metrics with bootstrap 95% intervals for each run and baseline, on shared rows;
    with `against` (a method's name), each other method's paired difference from it."""
    task, state = _task_and_state(runs)
    methods = _methods(runs, split)
    if against is not None and against not in methods:
        raise UserError(f"--against '{against}' is not among the compared methods; available: {', '.join(methods)}")
    first_name, first = next(iter(methods.items()))
    ids = sorted(first)
    for name, preds in methods.items():
        if set(preds) != set(ids):
            raise UserError(f"'{name}' was evaluated on other rows than '{first_name}' ({len(preds)} vs "
                            f"{len(ids)} ids); evaluate both on the same --data")
    draws = resamples(len(ids), samples)
    table, full, values = {}, {}, {}
    for name, preds in methods.items():
        # Gold comes from the first run, so a baseline file written without it is still scored.
        rows = [{**preds[i], "gold": first[i]["gold"]} for i in ids]
        scores = task.row_scores(rows, state)
        full[name] = task.aggregate(scores, state)
        values[name] = bootstrap_values(lambda idx, s=scores: task.aggregate([s[j] for j in idx], state), draws)
        table[name] = {k: {"value": round(full[name][k], 4),
                           "ci95": [round(x, 4) for x in percentile_interval(values[name][k])]}
                       for k in task.summary_metrics if k in full[name]}
    result = {"task": task.name, "split": split, "rows": len(ids), "samples": samples, "methods": table}
    if against is not None:
        result["against"] = against
        result["differences"] = _differences(task.summary_metrics, full, values, against)
    if out:
        write_json(out, result)
    for name, m in table.items():
        log.info("%-24s %s", name, metric_line(m, task.summary_metrics))
    for name, m in result.get("differences", {}).items():
        log.info("%-24s %s", f"{name} - {against}", metric_line(m, task.summary_metrics, signed=True))
    return result


def _differences(keys, full: dict, values: dict, against: str) -> dict[str, dict]:
    """Each method's difference from `against` per summary metric, with its paired 95% interval."""
    out = {}
    for name in full:
        if name == against:
            continue
        intervals = paired_difference(values[name], values[against])
        out[name] = {k: {"value": round(full[name][k] - full[against][k], 4), "ci95": [round(x, 4) for x in intervals[k]]}
                     for k in keys if k in intervals and k in full[against]}
    return out
