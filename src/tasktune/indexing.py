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
from pathlib import Path

from tasktune.atomic import write_jsonl
from tasktune.errors import UserError

log = logging.getLogger("tasktune")


def _retrieval_model(model: str, corpus: str | None, pooling: str | None):
    """(task, cfg, state, weights folder) of a retrieval run, or of a plain model with --pooling."""
    from tasktune.config import config_from_dict
    from tasktune.models.loading import resolve_model
    from tasktune.run import load_run
    from tasktune.tasks import get_task

    if (Path(model) / "best" / "tasktune.json").is_file():
        task, cfg, state, best = load_run(model)
        if task.name != "retrieval":
            raise UserError(f"'{model}' is a {task.name} run; index and mine take a retrieval run or a model")
        if corpus:
            cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"corpus": corpus})})
        return task, cfg, state, str(best)
    if not corpus:
        raise UserError("--corpus is needed with a model that is not a retrieval run")
    cfg = config_from_dict({"task": {"name": "retrieval", "corpus": corpus, "pooling": pooling or "mean"},
                            "model": {"name": model}}, "index")
    task = get_task("retrieval")
    return task, cfg, task.state_from_model(resolve_model(model), cfg, []), resolve_model(model)


def _identity(model: str, cfg, state, weights: str) -> dict:
    from tasktune.models.peft_adapters import weights_sha256

    return {"model": model, "weights_sha256": weights_sha256(weights), "pooling": cfg.task.pooling,
            "standardized": bool(state.get("standardizer")), "max_length": cfg.model.max_length}


def _loaded(task, cfg, state, weights):
    from tasktune.models.loading import to_device

    model, tok = task.build_model(weights, cfg, state, for_training=False)
    return to_device(model), tok


def index_build(model: str, corpus: str, out: str, kind: str = "flat", pooling: str | None = None,
                batch_size: int = 32) -> dict:
    """Embed every passage of `corpus` with `model` and save a faiss index in `out`; returns index.json."""
    from tasktune.retrieval import encoder
    from tasktune.retrieval.corpus import read_corpus
    from tasktune.retrieval.index import build_index

    task, cfg, state, weights = _retrieval_model(model, corpus, pooling)
    net, tok = _loaded(task, cfg, state, weights)
    passages = read_corpus(corpus, tuple(sorted(cfg.task.corpus_columns.items())))
    t = cfg.task

    def embed_texts(texts):
        return encoder.embed(net, tok, [t.passage_prefix + x for x in texts], t.pooling, state.get("standardizer"),
                             cfg.model.max_length, batch_size, cfg.train.bf16, desc="passages")

    return build_index(embed_texts, passages, out, _identity(model, cfg, state, weights), kind)


def index_search(index: str, queries: list[str], k: int = 5, model: str | None = None) -> list:
    """The k best passages of each query: [{id, score, text}] per query (a flat list for one query)."""
    from tasktune.retrieval import encoder
    from tasktune.retrieval.corpus import read_corpus
    from tasktune.retrieval.index import check_identity, load_index, search_vectors

    found, ids, meta = load_index(index)
    task, cfg, state, weights = _retrieval_model(model or meta["model"], meta["corpus"], meta["pooling"])
    check_identity(meta, _identity(model or meta["model"], cfg, state, weights), index)
    net, tok = _loaded(task, cfg, state, weights)
    vectors = encoder.embed(net, tok, [cfg.task.query_prefix + q for q in queries], cfg.task.pooling,
                            state.get("standardizer"), cfg.model.max_length, desc="queries")
    corpus = read_corpus(meta["corpus"], tuple(sorted(cfg.task.corpus_columns.items())))
    hits = [[{"id": d, "score": round(s, 5), "text": corpus.text(d)} for d, s in row]
            for row in search_vectors(found, ids, vectors, k)]
    return hits[0] if len(queries) == 1 else hits


def mine_negatives(model: str, queries: str, corpus: str, out: str, hard_if_gold_not_in: int = 3,
                   negatives: int = 5, max_similarity: float = 0.95, pooling: str | None = None,
                   keep_easy: bool = False) -> dict:
    """Rank `queries` with `model`, write the hard ones with their negatives and scores to `out` (jsonl)."""
    from tasktune.data.dataset import check_rows, read_rows
    from tasktune.retrieval import encoder
    from tasktune.retrieval.corpus import read_corpus
    from tasktune.retrieval.mining import mine
    from tasktune.tasks.retrieval import rank_rows

    task, cfg, state, weights = _retrieval_model(model, corpus, pooling)
    rows, table, _ = read_rows(queries, task, cfg.data.columns)
    rows = check_rows(task, rows, table.where, cfg, state)
    net, tok = _loaded(task, cfg, state, weights)
    deep = cfg.model_copy(update={"task": cfg.task.model_copy(update={"top_k": negatives + hard_if_gold_not_in + 20})})
    ranked = rank_rows(net, tok, rows, deep, state, 32)
    passages = read_corpus(corpus, tuple(sorted(cfg.task.corpus_columns.items())))
    vectors = encoder.embed(net, tok, [cfg.task.passage_prefix + x for x in passages.texts], cfg.task.pooling,
                            state.get("standardizer"), cfg.model.max_length, desc="passages")
    mined = mine([list(zip(p["ranked"], p["scores"])) for p in ranked], rows, vectors, passages,
                 hard_if_gold_not_in, negatives, max_similarity, keep_easy)
    write_jsonl(out, mined)
    hard = sum(1 for m in mined if m["hard"])
    log.info("%d of %d queries hard (no positive in the top %d) -> %s", hard, len(rows), hard_if_gold_not_in, out)
    return {"queries": len(rows), "hard": hard, "out": out}
