"""Ranking metrics: Top-k accuracy, recall@k, MRR@k, nDCG@k (binary relevance) and MAP@k.

A query's ranking is a list of ids, best first; its gold is the set of relevant ids. Every metric
is a mean over queries, so any subset of per-query scores aggregates the same way (bootstrap).

Example:
    s = query_scores(["d3", "d1", "d7"], {"d1"}, k=10)   # {'rank': 2, 'top1': 0.0, 'top3': 1.0, 'mrr@10': 0.5, ...}
    ranking_metrics([s])["mrr@10"]                         # 0.5
"""

from __future__ import annotations

import math

TOP_K = (1, 3, 5, 10)


def query_scores(ranked: list[str], gold: set[str], k: int = 10) -> dict:
    """Per-query scores of `ranked` (ids, best first) against the relevant ids `gold`.

    `rank` is the 1-based position of the first relevant id (None when none is in `ranked`).
    """
    rank = next((i + 1 for i, d in enumerate(ranked) if d in gold), None)
    out: dict = {"rank": rank}
    for n in TOP_K:
        out[f"top{n}"] = float(rank is not None and rank <= n)
    top = ranked[:k]
    out[f"mrr@{k}"] = 1.0 / rank if rank is not None and rank <= k else 0.0
    out[f"recall@{k}"] = sum(1 for d in top if d in gold) / len(gold) if gold else 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(top) if d in gold)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    out[f"ndcg@{k}"] = dcg / ideal if ideal else 0.0
    return out


def ranking_metrics(scores: list[dict]) -> dict[str, float]:
    """Means of the per-query scores (every key but `rank`)."""
    if not scores:
        return {}
    keys = [k for k in scores[0] if k != "rank"]
    return {k: sum(s[k] for s in scores) / len(scores) for k in keys}


def average_precision_at(guesses: list, gold, k: int = 3) -> float:
    """MAP@k of one question as the Kaggle LLM Science Exam scored it: a correct guess at rank r scores 1/r;
    guesses after the first correct one are ignored; one gold answer.

    Example: average_precision_at(["B", "A", "C"], "A") -> 0.5
    """
    for r, guess in enumerate(guesses[:k], start=1):
        if guess == gold:
            return 1.0 / r
    return 0.0
