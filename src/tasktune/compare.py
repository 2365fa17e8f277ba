"""`tasktune compare RUN...`: runs (and their baselines) on the same eval rows, with 95% intervals.

Reads each run's eval/<split>/predictions.jsonl and, once per name, the baselines saved beside it
(eval --baseline, baseline.after_training). Every method must cover the same row ids. Intervals
are bootstrap percentiles over rows (1,000 resamples, seeded).

Example: compare(["runs/a", "runs/b"], out="comparison.json")["methods"]["a"]["accuracy"]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tasktune.atomic import write_json
from tasktune.errors import UserError
from tasktune.metrics.bootstrap import bootstrap_ci
from tasktune.metrics.classification import classification_metrics

log = logging.getLogger("tasktune")
KEYS = ("accuracy", "macro_f1")
QA_KEYS = ("exact", "f1")


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


def compare(runs: list[str], split: str = "eval", out: str | None = None, samples: int = 1000) -> dict:
    """Accuracy and macro-F1 (classification) or EM and F1 (extractive QA) with bootstrap 95% intervals
    for each run and baseline, on shared rows."""
    methods = _methods(runs, split)
    first_name, first = next(iter(methods.items()))
    ids = sorted(first)
    for name, preds in methods.items():
        if set(preds) != set(ids):
            raise UserError(f"'{name}' was evaluated on other rows than '{first_name}' ({len(preds)} vs "
                            f"{len(ids)} ids); evaluate both on the same --data")
    if "answer" in first[ids[0]]:
        table, keys = _qa_table(methods, ids, first, _language(runs[0]), samples), QA_KEYS
    else:
        table, keys = _classification_table(methods, ids, first, samples), KEYS
    result = {"split": split, "rows": len(ids), "samples": samples, "methods": table}
    if out:
        write_json(out, result)
    for name, m in table.items():
        log.info("%-24s %s", name, "  ".join(f"{k} {m[k]['value']:.4f} [{m[k]['ci95'][0]:.4f}, {m[k]['ci95'][1]:.4f}]"
                                             for k in keys))
    return result


def _language(run: str) -> str:
    meta = Path(run) / "best" / "tasktune.json"
    state = json.loads(meta.read_text(encoding="utf-8")).get("state", {}) if meta.is_file() else {}
    return state.get("language") if state.get("language") in ("zh", "en") else "en"


def _qa_table(methods, ids, first, language, samples) -> dict:
    """EM and F1 (in %) per method, intervals over questions."""
    from tasktune.metrics.qa import qa_scores

    table = {}
    for name, preds in methods.items():
        scores = [qa_scores(preds[i]["answer"], first[i]["gold"], language) for i in ids]
        table[name] = {}
        for k in QA_KEYS:
            per_row = [100 * s[k] for s in scores]
            ci = bootstrap_ci(ids, lambda idx, v=per_row: sum(v[j] for j in idx) / len(idx), samples=samples)
            table[name][k] = {"value": round(sum(per_row) / len(per_row), 3), "ci95": [round(x, 3) for x in ci]}
    return table


def _classification_table(methods, ids, first, samples) -> dict:
    labels = sorted({p["gold"] for p in first.values()} | {p["label"] for m in methods.values() for p in m.values()})
    index = {lab: i for i, lab in enumerate(labels)}
    gold = [index[first[i]["gold"]] for i in ids]
    table = {}
    for name, preds in methods.items():
        pred = [index[preds[i]["label"]] for i in ids]

        def stat(key, pred=pred):
            return lambda idx: classification_metrics([gold[j] for j in idx], [pred[j] for j in idx], labels)[key]

        full = classification_metrics(gold, pred, labels)
        table[name] = {k: {"value": round(full[k], 4),
                           "ci95": [round(x, 4) for x in bootstrap_ci(ids, stat(k), samples=samples)]}
                       for k in KEYS}
    return table
