"""The retrieval task's two-stage pipeline (`task.mine`), as plain functions of the task, model and run folder.

Stage 1 (before training): the starting model ranks the training queries and the eval queries;
`stage1/evaluation_results.json` keeps every query's ranked ids, scores and gold rank with the
metrics; the hard training queries and their negatives go to `hard_negatives.jsonl`, and training
uses them (`task.mine.train_on`). Stage 2 (after training): the final evaluation of the same eval
queries is set beside stage 1 in `comparison.json` (per metric and per query).

Example (through the engine): `tasktune train examples/retrieval_two_stage.yaml`
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from tasktune.atomic import write_json, write_jsonl

log = logging.getLogger("tasktune")
STAGE1 = "stage1"


def _evaluate(task, model, tokenizer, rows, cfg, state, passages) -> tuple[list[dict], dict]:
    from tasktune.tasks.retrieval import rank_rows

    preds = rank_rows(model, tokenizer, rows, cfg, state, cfg.train.eval_batch_size or 32, passages)
    preds = [{**p, "gold": task.gold(r)} for p, r in zip(preds, rows)]
    scores = task.row_scores(preds, state)
    for p, s in zip(preds, scores):
        p["gold_rank"] = s["rank"]
    return preds, task.aggregate(scores, state)


def mine_stage(task, model, tokenizer, splits, cfg, run_dir: Path):
    """Stage 1: rank with the starting model, mine, write the artifacts; returns splits with the mined rows."""
    from tasktune.retrieval.mining import mine
    from tasktune.tasks.retrieval import passage_vectors

    m, state = cfg.task.mine, splits.state
    cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"combine": "none"})})  # the starting model alone
    # Deep enough to see a gold passage anywhere in the top hard_if_gold_not_in: a gold ranked below the list's
    # end would otherwise count as "not found", i.e. hard, however high hard_if_gold_not_in was set.
    depth = cfg.task.model_copy(update={"top_k": max(cfg.task.top_k, m.negatives + 20, m.hard_if_gold_not_in)})
    deep = cfg.model_copy(update={"task": depth})
    passages = passage_vectors(model, tokenizer, cfg, state, cfg.train.eval_batch_size or 32)  # encoded once
    corpus, vectors, _ = passages
    train_preds, train_metrics = _evaluate(task, model, tokenizer, splits.train, deep, state, passages)
    eval_preds, eval_metrics = (_evaluate(task, model, tokenizer, splits.eval, cfg, state, passages)
                                if splits.eval else ([], {}))
    rankings = [list(zip(p["ranked"], p["scores"])) for p in train_preds]
    mined = mine(rankings, splits.train, vectors, corpus, m.hard_if_gold_not_in, m.negatives, m.max_similarity,
                 keep_easy=m.train_on == "all")
    out = Path(run_dir)
    write_json(out / STAGE1 / "evaluation_results.json", {
        "model": cfg.model.name, "train": {"metrics": train_metrics, "queries": train_preds},
        "eval": {"metrics": eval_metrics, "queries": eval_preds}})
    write_jsonl(out / "hard_negatives.jsonl", [x for x in mined if x["hard"]])
    by_id = {x["query_id"]: x for x in mined}
    rows = [{**r, "negative_ids": by_id[r["id"]]["negative_ids"] or r["negative_ids"]}
            for r in splits.train if r["id"] in by_id]
    hard = sum(1 for x in mined if x["hard"])
    log.info("stage 1: the starting model ranks a positive in the top %d for %d of %d training queries; %d hard "
             "queries mined (%d negatives each at most) -> %s; training on %d queries (%s)", m.hard_if_gold_not_in,
             len(splits.train) - hard, len(splits.train), hard, m.negatives, out / "hard_negatives.jsonl", len(rows),
             m.train_on)
    if not rows:
        from tasktune.errors import UserError

        raise UserError(f"task.mine: no training query is hard (every positive ranks in the top "
                        f"{m.hard_if_gold_not_in}); lower task.mine.hard_if_gold_not_in or set task.mine.train_on=all")
    return replace(splits, train=rows)


def compare_stage(task, splits, run_dir: Path) -> dict | None:
    """Stage 2: the final eval predictions beside stage 1's, in comparison.json (per metric and per query)."""
    run_dir = Path(run_dir)
    before_path, after_path = run_dir / STAGE1 / "evaluation_results.json", run_dir / "eval/eval/predictions.jsonl"
    if not (before_path.is_file() and after_path.is_file()):
        return None
    before = json.loads(before_path.read_text(encoding="utf-8"))["eval"]
    after = [json.loads(x) for x in after_path.read_text(encoding="utf-8").splitlines()]
    after_metrics = task.aggregate(task.row_scores(after, splits.state), splits.state)
    ranks_after = {p["id"]: s["rank"] for p, s in zip(after, task.row_scores(after, splits.state))}
    per_query = [{"id": p["id"], "query": p["query"], "gold_rank_before": p["gold_rank"],
                  "gold_rank_after": ranks_after.get(p["id"])} for p in before["queries"]]
    result = {"metrics": {k: {"before": before["metrics"].get(k), "after": v} for k, v in after_metrics.items()},
              "queries": per_query}
    write_json(run_dir / "comparison.json", result)
    shown = "  ".join(f"{k} {v['before']:.3f} -> {v['after']:.3f}" for k, v in result["metrics"].items()
                      if v["before"] is not None)
    log.info("stage 2 (eval queries, before -> after training): %s -> %s", shown, run_dir / "comparison.json")
    return result
