"""`tasktune ensemble RUN... --data F --out DIR`: a weighted blend of multiple-choice runs, saved as a run.

Every member predicts the labelled rows of `--data`; the weights are fitted on all of them and saved
in DIR/best/tasktune.json (members and weights), so `predict`, `eval` and `compare` take DIR like any
run. DIR/eval/<split>/ holds the blend's predictions from weights fitted on the OTHER folds
(cross-fitted: never scored on the rows its weights saw), with every member's predictions beside it
as baselines, so `tasktune compare DIR` shows members and blend with intervals.

Example: ensemble(["runs/mc_a", "runs/mc_b"], data="dev.jsonl", out="runs/mc_ens")["weights"]
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from tasktune import __version__
from tasktune.atomic import write_json, write_jsonl, write_text
from tasktune.config import to_yaml
from tasktune.errors import UserError

log = logging.getLogger("tasktune")


def ensemble(runs: list[str], data: str, out: str, folds: int = 2, overwrite: bool = False) -> dict:
    """Fit the blend of `runs` on `data`, write the ensemble run `out`; returns weights and cross-fitted metrics."""
    from tasktune.data.dataset import check_rows, read_rows
    from tasktune.models.loading import to_device
    from tasktune.run import load_run, with_gold
    from tasktune.tasks.mc_ensemble import blend, cross_fit, fit_weights
    from tasktune.tasks.multiple_choice import LETTERS, _prediction

    if len(runs) < 2:
        raise UserError("ensemble needs at least 2 runs")
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise UserError(f"'{out}' is not empty; pass --overwrite or choose another --out")
    loaded = [load_run(r) for r in runs]
    if any(t.name != "multiple_choice" for t, *_ in loaded):
        raise UserError("ensemble blends multiple_choice runs; " + ", ".join(
            f"{r} is {t.name}" for r, (t, *_) in zip(runs, loaded) if t.name != "multiple_choice"))
    task, cfg, state, _ = loaded[0]
    rows, table, _ = read_rows(data, task, cfg.data.columns)
    rows = check_rows(task, rows, table.where, cfg, state)
    member_preds = {}
    for run, (t, c, s, best) in zip(runs, loaded):
        model, tok = t.build_model(str(best), c, s, for_training=False)
        member_preds[Path(run).name] = with_gold(t, t.predict(to_device(model), tok, rows, c, s, 16), rows)
    gold = [r["answer"] for r in rows]
    probs = [[[p["probs"][LETTERS[j]] for j in range(len(r["options"]))] for p, r in zip(preds, rows)]
             for preds in member_preds.values()]
    weights = fit_weights(probs, gold)
    crossed, fold_weights = cross_fit(probs, gold, folds)
    blended = with_gold(task, [_prediction(r, p) for r, p in zip(rows, crossed)], rows)
    split = Path(data).stem
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ens_state = {**state, "ensemble": {"members": [str(Path(r).resolve()) for r in runs], "weights": weights,
                                       "fitted_on": str(Path(data).resolve()), "fold_weights": fold_weights}}
    write_json(tmp / "best" / "tasktune.json", {"tasktune_version": __version__, "task": task.name,
                                                 "state": ens_state, "config": cfg.model_dump(mode="json")})
    write_text(tmp / "config.yaml", to_yaml(cfg))
    write_jsonl(tmp / "eval" / split / "predictions.jsonl", blended)
    for name, preds in member_preds.items():
        write_jsonl(tmp / "eval" / split / "baselines" / f"{name}.jsonl", preds)
    report = {"weights": dict(zip(member_preds, weights)), "folds": folds, "rows": len(rows),
              "cross_fitted": task.aggregate(task.row_scores(blended, state), state),
              "members": {n: task.aggregate(task.row_scores(p, state), state) for n, p in member_preds.items()},
              "blend_on_fitted_rows": task.aggregate(task.row_scores(with_gold(
                  task, [_prediction(r, p) for r, p in zip(rows, blend(probs, weights))], rows), state), state)}
    write_json(tmp / "eval" / split / "metrics.json", report)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("ensemble weights %s; cross-fitted %s -> %s", report["weights"], report["cross_fitted"], target)
    return report
