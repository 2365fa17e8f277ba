"""`tasktune index build | search` and `tasktune mine`: a retrieval model's index and hard negatives as commands.

MODEL is a retrieval run folder (its best model, pooling and standardisation) or any model folder /
catalog name (pooling from --pooling). The index folder records the model and its weights sha256,
so `index search` reloads the same model and refuses another.

Example:
    index_build("runs/ret", "passages.jsonl", "idx/")
    index_search("idx/", ["北京是哪个国家的首都？"], k=5)
    mine_negatives("runs/ret", "queries.jsonl", "passages.jsonl", "hard.jsonl", hard_if_gold_not_in=3, negatives=5)
"""

from __future__ import annotations

import logging
from tasktune.atomic import write_jsonl

log = logging.getLogger("tasktune")


def index_build(model: str, corpus: str, out: str, kind: str = "flat", pooling: str | None = None,
                batch_size: int = 32, overwrite: bool = False) -> dict:
    """Embed every passage of `corpus` with `model` and save a faiss index in `out`; returns index.json."""
    from pathlib import Path

    from tasktune.errors import UserError

    if (Path(out) / "index.json").exists() and not overwrite:
        raise UserError(f"'{out}' already holds an index; pass --overwrite to replace it or choose another --out")
    from tasktune.retrieval.corpus import read_corpus
    from tasktune.retrieval.index import build_index
    from tasktune.tasks.retrieval import embed_texts, index_identity, loaded, retrieval_model

    task, cfg, state, weights = retrieval_model(model, corpus, pooling)
    net, tok = loaded(task, cfg, state, weights)
    passages = read_corpus(corpus, tuple(sorted(cfg.task.corpus_columns.items())))
    t = cfg.task

    def embed_passages(texts):
        return embed_texts(net, tok, [t.passage_prefix + x for x in texts], cfg, state.get("standardizer"), batch_size,
                           desc="passages")

    return build_index(embed_passages, passages, out, index_identity(model, cfg, state, weights), kind)


def index_search(index: str, queries: list[str], k: int = 5, model: str | None = None) -> list:
    """The k best passages of each query: [{id, score, text}] per query (a flat list for one query)."""
    from tasktune.tasks.retrieval import search_index

    hits = search_index(index, queries, k, model)
    return hits[0] if len(queries) == 1 else hits


def mine_negatives(model: str, queries: str, corpus: str, out: str, hard_if_gold_not_in: int = 3,
                   negatives: int = 5, max_similarity: float = 0.95, pooling: str | None = None,
                   keep_easy: bool = False) -> dict:
    """Rank `queries` with `model`, write the hard ones with their negatives and scores to `out` (jsonl)."""
    from tasktune.data.dataset import check_rows, read_rows
    from tasktune.retrieval.mining import mine
    from tasktune.tasks.retrieval import loaded, passage_vectors, rank_rows, retrieval_model

    task, cfg, state, weights = retrieval_model(model, corpus, pooling)
    rows, table, _ = read_rows(queries, task, cfg.data.columns)
    rows = check_rows(task, rows, table.where, cfg, state)
    net, tok = loaded(task, cfg, state, weights)
    deep = cfg.model_copy(update={"task": cfg.task.model_copy(update={"top_k": negatives + hard_if_gold_not_in + 20})})
    encoded = passage_vectors(net, tok, deep, state, 32)  # the corpus encoded once: ranking and near-copy checks
    ranked = rank_rows(net, tok, rows, deep, state, 32, encoded)
    passages, vectors, _ = encoded
    mined = mine([list(zip(p["ranked"], p["scores"])) for p in ranked], rows, vectors, passages,
                 hard_if_gold_not_in, negatives, max_similarity, keep_easy)
    write_jsonl(out, mined)
    hard = sum(1 for m in mined if m["hard"])
    log.info("%d of %d queries hard (no positive in the top %d) -> %s", hard, len(rows), hard_if_gold_not_in, out)
    return {"queries": len(rows), "hard": hard, "out": out}
