"""Hard-negative mining from a model's rankings: the queries it gets wrong and the passages that fooled it.

A query is hard when none of its positives ranks in the top `hard_if_gold_not_in`. Its negatives
are the best-ranked passages that are not a known positive and not a near-duplicate of one (cosine
similarity to a positive passage above `max_similarity`: such a passage likely answers the query
too, and training it away would teach the model to separate copies).

Example:
    mined = mine(rankings, queries, passage_vectors, corpus, hard_if_gold_not_in=3, negatives=5)
    mined[0]   # {"query_id", "query", "positive_ids", "negative_ids", "negative_scores", "gold_rank", "hard"}
"""

from __future__ import annotations


def mine(rankings: list[list[tuple[str, float]]], queries: list[dict], vectors, corpus,
         hard_if_gold_not_in: int = 3, negatives: int = 5, max_similarity: float = 0.95,
         keep_easy: bool = False) -> list[dict]:
    """One record per query (only the hard ones unless `keep_easy`), in query order.

    `rankings[i]` is query i's ranked (id, score) list (longer than `negatives` plus its positives),
    `vectors` the corpus embeddings (rows in corpus order, L2-normalised) for the near-duplicate test.
    """
    import numpy as np

    out = []
    for ranked, q in zip(rankings, queries):
        gold = set(q["positive_ids"])
        rank = next((i + 1 for i, (d, _) in enumerate(ranked) if d in gold), None)
        hard = rank is None or rank > hard_if_gold_not_in
        if not hard and not keep_easy:
            continue
        pos_vecs = vectors[[corpus.index[p] for p in q["positive_ids"]]]
        chosen, scores = [], []
        for doc, score in ranked:
            if len(chosen) == negatives:
                break
            if doc in gold:
                continue
            if float(np.max(pos_vecs @ vectors[corpus.index[doc]])) > max_similarity:
                continue  # a near-copy of a positive: probably relevant, never a negative
            chosen.append(doc)
            scores.append(round(score, 6))
        out.append({"query_id": q["id"], "query": q["query"], "positive_ids": list(q["positive_ids"]),
                    "negative_ids": chosen, "negative_scores": scores, "gold_rank": rank, "hard": hard})
    return out
