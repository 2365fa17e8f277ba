"""Dense retrieval: a bi-encoder on any backbone ranks the passages of a corpus for each query.

Data contract: query rows with required `query` and `positive_ids` (ids of relevant passages, a
list, or one id); optional `id`, `negative_ids` (known hard negatives) and `group` (queries of one
group stay on one side of a split). The corpus is a second file, `task.corpus`, rows {id, text}.
Example query row: {"id": "q1", "query": "北京是哪个国家的首都？", "positive_ids": ["p17"]}
Example corpus row: {"id": "p17", "text": "北京是中华人民共和国的首都。"}
`tasktune data convert --from qa-retrieval` makes both from an extractive-QA file.

Model: `AutoModel` + pooling (mean / cls / last) + optional per-dimension standardisation + L2
norm (`retrieval/encoder.py`); best/ is also a sentence-transformers folder. Loss: in-batch
negatives (InfoNCE at `task.temperature`) plus each query's hard negatives, with known positives
of a query never counted as its negatives; or the margin ranking loss max(0, margin - (s_pos -
s_neg)) on cosine similarity. `task.mine` makes training a two-stage pipeline: rank with the
starting model, mine hard queries and negatives (`retrieval/mining.py`), train, re-evaluate, and
write evaluation_results.json, hard_negatives.jsonl and comparison.json into the run folder.
Metrics: Top-1/3/5/10 accuracy, MRR@10, nDCG@10, recall@10; BM25 is the baseline beside them.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import replace
from typing import Literal

from pydantic import Field

from tasktune.config import Section, TaskSettings
from tasktune.engine.distributed import gather_rows
from tasktune.errors import UserError
from tasktune.metrics.ranking import query_scores, ranking_metrics
from tasktune.retrieval import encoder
from tasktune.retrieval.corpus import read_corpus
from tasktune.tasks.protocol import RowError

log = logging.getLogger("tasktune")
K = 10  # the depth of MRR / nDCG / recall


class MiningSettings(Section):
    hard_if_gold_not_in: int = Field(3, gt=0, description="A training query is hard when no positive ranks in this top k.")
    negatives: int = Field(5, gt=0, description="Hard negatives mined per hard query (best-ranked non-positives).")
    max_similarity: float = Field(
        0.95, gt=0, le=1, description="Skip a candidate whose cosine similarity to a positive passage exceeds this "
        "(a near-copy of a positive is probably relevant).")
    train_on: Literal["hard", "all"] = Field("hard", description="Train on the hard queries only, or on all of them.")


class RetrievalSettings(TaskSettings):
    name: Literal["retrieval"] = "retrieval"
    corpus: str = Field(..., description="Corpus file: rows {id, text} (jsonl, json, csv, tsv, parquet).")
    corpus_columns: dict[str, str] = Field(default_factory=dict, description="Corpus field -> column, e.g. {text: body}.")
    pooling: Literal["mean", "cls", "last"] = Field("mean", description="Token states -> one vector: mean of real "
                                                    "tokens, the first token, or the last real token.")
    standardize: bool = Field(
        False, description="Standardise each dimension (statistics of the starting model on training texts) before "
        "L2 norm: decoders such as gemma have a few huge dimensions that otherwise dominate the cosine.")
    loss: Literal["infonce", "margin"] = Field("infonce", description="In-batch + hard negatives contrastive loss, "
                                               "or the margin ranking loss on each query's hard negatives.")
    temperature: float = Field(0.05, gt=0, description="infonce: similarities are divided by this.")
    margin: float = Field(0.1, gt=0, description="margin: s_pos - s_neg should exceed this (cosine).")
    negatives_per_query: int = Field(1, ge=0, description="Hard negatives (negative_ids) trained with each query.")
    forward_rows: int | None = Field(
        None, gt=0, description="Training: encode a batch's passages in groups of this many, sorted by length, each "
        "padded to its own longest (same loss, less padding). Unset: 8 on CPU (with it, training ran at 1.22x "
        "sentence-transformers' trainer: bench/RESULTS.md), the whole batch on a GPU (large products are what it "
        "is fast at).")
    top_k: int = Field(10, gt=0, description="Passages kept per query in predictions (metrics need 10).")
    query_prefix: str = Field("", description="Text put before each query, e.g. 'query: ' (E5-style models).")
    passage_prefix: str = Field("", description="Text put before each passage, e.g. 'passage: '.")
    mine: MiningSettings | None = Field(None, description="Two-stage training: mine hard negatives with the "
                                        "starting model first (absent: train on the rows as given).")
    fusion: Literal["none", "rrf", "scores"] = Field(
        "none", description="Fuse the dense ranking with BM25's (lexical overlap is strong on Chinese question/"
        "passage pairs). rrf: reciprocal rank fusion (w/(k + rank) summed); scores: w * dense + (1-w) * BM25 "
        "with each ranking's scores min-max scaled to [0, 1] per query (keeps how far apart the hits are).")
    fusion_k: int = Field(60, gt=0, description="rrf: the k in 1/(k + rank).")
    fusion_weight: float = Field(0.5, ge=0, le=1, description="The dense ranking's weight w in the fusion (BM25's is "
                                 "1 - w); "
                                 "below 0.5 when the dense model is the weaker one, so it cannot outvote BM25's "
                                 "confident first hits.")
    combine: Literal["none", "scores", "weights"] = Field(
        "none", description="Combine the starting (stage-1) and trained (stage-2) models when evaluating, indexing "
        "and searching: scores ranks by w*cos(trained) + (1-w)*cos(start) (two encodings); weights encodes with "
        "the weight average (1-w)*start + w*trained (the LoRA update scaled by w, one encoding). Needs model.lora.")
    combine_weight: float = Field(0.5, ge=0, le=1, description="task.combine: the trained model's weight w.")

    def check(self, cfg) -> str | None:
        if cfg.train.packing:
            return "train.packing does not apply to retrieval (queries and passages are encoded separately)"
        if self.combine != "none" and cfg.model.lora is None:
            return (f"task.combine={self.combine} needs model.lora (the starting model is the base under the "
                    "adapter); set model.lora or task.combine=none")
        if self.loss == "margin" and self.negatives_per_query == 0:
            return "task.loss margin needs hard negatives: set task.negatives_per_query >= 1"
        return None


def _corpus(cfg):
    return read_corpus(cfg.task.corpus, tuple(sorted(cfg.task.corpus_columns.items())))


def _ids(value, what: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = json.loads(value) if value.strip().startswith("[") else [value]
    if not isinstance(value, list):
        raise RowError(f"{what} must be a list of corpus ids")
    return [str(v) for v in value]


class Retrieval:
    """Dense retrieval with a bi-encoder: in-batch and hard negatives, hard-negative mining, BM25 baseline."""

    name = "retrieval"
    Settings = RetrievalSettings
    required_columns = ["query", "positive_ids"]
    optional_columns = ["id", "negative_ids", "group"]
    label_columns = ["positive_ids"]
    summary_metrics = ("top1", "top3", "top5", f"mrr@{K}")
    metric_names = ("top1", "top3", "top5", "top10", f"mrr@{K}", f"ndcg@{K}", f"recall@{K}")
    lower_is_better = ()

    # --- data ---------------------------------------------------------------------------------
    def parse_row(self, row, cfg, state, labelled=True):
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise RowError("empty or missing query; fill it in or remove the row")
        out = {**row, "positive_ids": _ids(row.get("positive_ids"), "positive_ids"),
               "negative_ids": _ids(row.get("negative_ids"), "negative_ids")}
        if labelled and not out["positive_ids"]:
            raise RowError("no positive_ids; every training/eval query needs the id of a relevant passage")
        known = _corpus(cfg).index
        for key in ("positive_ids", "negative_ids"):
            missing = [d for d in out[key] if d not in known]
            if missing:
                raise RowError(f"{key} '{missing[0]}' is not in the corpus {cfg.task.corpus}; fix the id or add the "
                               "passage")
        return out

    def split_keys(self, row):
        return None, row.get("group")

    def setup(self, train_rows, cfg):
        from tasktune.metrics.qa import detect_language

        corpus = _corpus(cfg)
        return {"corpus": {"path": corpus.path, "sha256": corpus.sha256, "passages": len(corpus.ids),
                           "columns": dict(cfg.task.corpus_columns)},
                "language": detect_language(list(corpus.texts[:200])), "standardizer": None}

    def state_from_model(self, path, cfg, rows):
        return self.setup(rows, cfg)

    def gold(self, row):
        return list(row["positive_ids"])

    def input_columns(self, state):
        return ["query"], ["id", "positive_ids", "negative_ids", "group"]

    def text_row(self, text, extra):
        if extra:
            raise UserError(f"predict --{next(iter(extra))} does not apply to retrieval runs")
        return {"id": "text", "query": text}

    # --- model and training -------------------------------------------------------------------
    def head_modules(self, cfg):
        return []

    def build_model(self, path, cfg, state, for_training=True):
        from transformers import AutoModel

        from tasktune.models.loading import attention_kwargs, load_tokenizer, torch_dtype
        from tasktune.models.peft_adapters import load_model

        tok = load_tokenizer(path, "right")  # `last` pooling reads the last real token of right-padded rows

        def loader(p, **kwargs):
            return AutoModel.from_pretrained(p, dtype=torch_dtype(cfg.model.dtype), **attention_kwargs(p, cfg),
                                             **kwargs)

        return load_model(path, loader, cfg, "FEATURE_EXTRACTION", for_training), tok

    def prepare(self, rows, tokenizer, cfg, state):
        corpus, t = _corpus(cfg), cfg.task
        feats = []
        for r in rows:
            negatives = r.get("negative_ids", [])[:t.negatives_per_query]
            for pos in r["positive_ids"]:
                texts = [t.query_prefix + r["query"]] + [t.passage_prefix + corpus.text(d) for d in [pos, *negatives]]
                enc = tokenizer(texts, truncation=True, max_length=cfg.model.max_length)["input_ids"]
                feats.append({"query_ids": enc[0], "passage_ids": enc[1:],
                              "passage_index": [corpus.index[d] for d in [pos, *negatives]],
                              "positive_index": [corpus.index[d] for d in r["positive_ids"]]})
        return feats

    def collator(self, tokenizer, cfg, state):
        return PairCollator(tokenizer.pad_token_id)

    def compute_loss(self, model, batch, cfg, state):
        import torch

        # Queries and passages in two forwards, each padded to its own longest: padding short queries to
        # passage length cost ~30% of the training time (measured against sentence-transformers).
        stats, pooling = state.get("standardizer"), cfg.task.pooling
        rows = cfg.task.forward_rows or (None if batch["input_ids"].is_cuda else 8)
        queries = encoder.embeddings(model, batch["input_ids"], batch["attention_mask"], pooling, stats)
        passages = encoder.embeddings_grouped(model, batch["passage_input_ids"], batch["passage_attention_mask"],
                                              pooling, stats, rows)
        target, docs = batch["target"], batch["passage_doc"]
        if cfg.task.loss == "infonce":
            # On several processes every query meets every process's passages, as one process with the
            # whole batch would (in-batch negatives would otherwise shrink with the process count).
            passages, offset = gather_rows(passages)
            docs = gather_rows(docs)[0]
            target = target + offset
        # A query's known positives among the passages it meets, by corpus index (any process's passages).
        is_positive = (batch["positive_docs"].unsqueeze(-1) == docs.view(1, 1, -1)).any(1)
        sim = queries @ passages.T                                                   # (queries, passages)
        others = is_positive & ~torch.nn.functional.one_hot(target, sim.shape[1]).bool()
        if cfg.task.loss == "infonce":
            # A query's other known positives are never its negatives (CMRC-like data: questions share passages).
            logits = (sim / cfg.task.temperature).masked_fill(others, float("-inf"))
            return torch.nn.functional.cross_entropy(logits, target, reduction="sum")
        negatives = batch["own_negative"]
        negatives = torch.where(negatives.any(1, keepdim=True), negatives, ~is_positive)
        s_pos = sim.gather(1, target.unsqueeze(1))
        hinge = torch.relu(cfg.task.margin - (s_pos - sim)) * negatives
        return (hinge.sum(1) / negatives.sum(1).clamp(min=1)).sum()

    # --- inference and metrics ----------------------------------------------------------------
    def predict(self, model, tokenizer, rows, cfg, state, batch_size=32):
        return rank_rows(model, tokenizer, rows, cfg, state, batch_size)

    def row_scores(self, predictions, state):
        return [query_scores(p["ranked"], set(p["gold"]), K) for p in predictions]

    def aggregate(self, scores, state):
        return ranking_metrics(scores)

    def metrics(self, predictions, state):
        scores = self.row_scores(predictions, state)
        ranks = [s["rank"] for s in scores]
        return {**ranking_metrics(scores), "queries": len(scores),
                "not_in_top_k": sum(1 for r in ranks if r is None)}

    def baselines(self, rows, state):
        from tasktune.retrieval.bm25 import bm25_rankings

        corpus = read_corpus(state["corpus"]["path"], tuple(sorted(state["corpus"].get("columns", {}).items())))
        ranked = bm25_rankings(corpus, [r["query"] for r in rows], max(K, 10), state["language"])
        return {"bm25": [_prediction(r, found) for r, found in zip(rows, ranked)]}

    def zero_shot(self, path, rows, cfg, state, batch_size=16):
        """The starting model (no LoRA, no training) ranking the same queries."""
        from tasktune.models.loading import to_device

        base_cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lora": None, "quantization": None}),
                                          "task": cfg.task.model_copy(update={"combine": "none"})})
        model, tok = self.build_model(path, base_cfg, state, for_training=False)
        # The standardiser of a trained run was measured on this same starting model: it applies as is.
        return {"base_model": rank_rows(to_device(model), tok, rows, base_cfg, state, batch_size)}

    def before_training(self, model, tokenizer, splits, cfg, run_dir):
        """Standardiser statistics of the starting model, then (task.mine) stage 1: rank, mine, keep the hard rows."""
        from tasktune.tasks import retrieval_stages

        state = dict(splits.state)
        if cfg.task.standardize:
            state["standardizer"] = _measure(model, tokenizer, splits.train, cfg)
        splits = replace(splits, state=state)
        if cfg.task.mine is None:
            return splits
        return retrieval_stages.mine_stage(self, model, tokenizer, splits, cfg, run_dir)

    def after_training(self, model, tokenizer, splits, cfg, run_dir, metrics):
        from tasktune.tasks import retrieval_stages

        if cfg.task.mine is not None:
            retrieval_stages.compare_stage(self, splits, run_dir)

    def save_artifacts(self, model, tokenizer, cfg, state, folder):
        """best/ is also a sentence-transformers folder (Transformer, Pooling, standardisation, Normalize)."""
        if cfg.task.combine != "none":
            log.warning("best/ as a sentence-transformers folder is the trained model alone: task.combine=%s applies "
                        "in tasktune's eval, index and search only", cfg.task.combine)
        encoder.save_sentence_transformer(folder, _hidden_size(model), cfg.task.pooling, state.get("standardizer"),
                                          cfg.model.max_length)


class PairCollator:
    """Features -> the queries as one padded batch and every query's passages (its positive first, then its
    hard negatives) as another; each passage's corpus index and each query's positive indices (to find its known
    positives among any passages, another process's too), and a mask of its own hard negatives."""

    def __init__(self, pad_id: int | None):
        self.pad = pad_id if pad_id is not None else 0

    def _padded(self, seqs: list[list[int]]):
        import torch

        width = max(len(s) for s in seqs)
        return (torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs]),
                torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]))

    def __call__(self, feats: list[dict]) -> dict:
        import torch

        q_ids, q_mask = self._padded([f["query_ids"] for f in feats])
        p_ids, p_mask = self._padded([p for f in feats for p in f["passage_ids"]])
        doc = [d for f in feats for d in f["passage_index"]]
        target, own, start = [], torch.zeros(len(feats), len(doc), dtype=torch.bool), 0
        for i, f in enumerate(feats):
            target.append(start)
            own[i, start + 1:start + len(f["passage_index"])] = True
            start += len(f["passage_index"])
        is_pos = torch.tensor([[d in set(f["positive_index"]) for d in doc] for f in feats])
        width = max(len(f["positive_index"]) for f in feats)
        return {"input_ids": q_ids, "attention_mask": q_mask, "passage_input_ids": p_ids,
                "passage_attention_mask": p_mask, "target": torch.tensor(target),
                "own_negative": own & ~is_pos, "loss_items": len(feats),
                # Corpus indices, to find each query's known positives among other processes' passages too.
                "passage_doc": torch.tensor(doc), "positive_docs": torch.tensor(
                    [f["positive_index"] + [-1] * (width - len(f["positive_index"])) for f in feats])}


def passage_vectors(model, tokenizer, cfg, state, batch_size):
    """(corpus, its L2-normalised embeddings, the standardiser used): one encoding of the whole corpus."""
    corpus, t = _corpus(cfg), cfg.task
    stats = state.get("standardizer")
    if t.standardize and stats is None:  # a model trained elsewhere: measure on the corpus itself
        stats = encoder.measure_standardizer(model, tokenizer, list(corpus.texts[:512]), t.pooling, cfg.model.max_length)
    vectors = embed_texts(model, tokenizer, [t.passage_prefix + x for x in corpus.texts], cfg, stats, batch_size,
                          desc="passages")
    return corpus, vectors, stats


def embed_texts(model, tokenizer, texts: list[str], cfg, stats: dict | None, batch_size: int = 32,
                desc: str = "embed"):
    """L2-normalised embeddings of `texts` by `model`, or by task.combine's mix of it and its starting model.

    scores: [sqrt(w) * trained, sqrt(1-w) * start] side by side, so that one inner product is
    w*cos(trained) + (1-w)*cos(start) and a faiss index holds the fusion; weights: the LoRA update scaled
    by w, which is exactly the weight average (1-w)*start + w*trained (only the adapter was trained).
    Example: embed_texts(model, tok, ["北京在哪里？"], cfg, None) -> array of shape (1, hidden)."""
    import numpy as np

    t = cfg.task

    def run():
        return encoder.embed(model, tokenizer, texts, t.pooling, stats, cfg.model.max_length, batch_size,
                             cfg.train.bf16, desc=desc)

    if t.combine == "none":
        return run()
    if not hasattr(model, "disable_adapter"):
        raise UserError(f"task.combine={t.combine} needs a LoRA model (the starting model is the base under the "
                        "adapter); this one has full weights: set task.combine=none")
    w = t.combine_weight
    if t.combine == "weights":
        from peft.helpers import rescale_adapter_scale

        with rescale_adapter_scale(model, w):
            return run()
    trained = run()
    with model.disable_adapter():
        start = run()
    return np.concatenate([np.sqrt(w) * trained, np.sqrt(1 - w) * start], axis=1).astype(np.float32)


def rank_rows(model, tokenizer, rows, cfg, state, batch_size, passages=None) -> list[dict]:
    """Each row's top task.top_k passages by cosine similarity (or fused with BM25): {id, query, ranked, scores}.

    `passages` is `passage_vectors(...)`'s result, to rank several sets of queries on one encoding."""
    import faiss

    t = cfg.task
    corpus, vectors, stats = passages or passage_vectors(model, tokenizer, cfg, state, batch_size)
    queries = embed_texts(model, tokenizer, [t.query_prefix + r["query"] for r in rows], cfg, stats, batch_size,
                          desc="queries")
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    depth = min(max(t.top_k, K) if t.fusion == "none" else max(t.top_k, 100), len(corpus.ids))
    scores, found = index.search(queries, depth)
    dense = [[(corpus.ids[j], float(s)) for j, s in zip(f_row, s_row)] for f_row, s_row in zip(found, scores)]
    if t.fusion != "none":
        from tasktune.retrieval.bm25 import bm25_rankings

        lexical = bm25_rankings(corpus, [r["query"] for r in rows], depth, state["language"])
        weights = (t.fusion_weight, 1 - t.fusion_weight)
        fuse = (lambda d, b: _rrf(d, b, k=t.fusion_k, weights=weights)) if t.fusion == "rrf" else \
            (lambda d, b: _score_fusion(d, b, weights=weights))
        dense = [fuse(d, b)[:max(t.top_k, K)] for d, b in zip(dense, lexical)]
    return [_prediction(r, found_row) for r, found_row in zip(rows, dense)]


def _rrf(*rankings, k: int = 60, weights=None) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each id scores the sum of weight / (k + rank) over the rankings that hold it.

    Example: _rrf([("a", .9), ("b", .8)], [("b", 3.), ("a", 1.)], k=1, weights=(.25, .75))
             -> b: .25/3 + .75/2 = .458, a: .25/2 + .75/3 = .375
    """
    total: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings)):
        for rank, (doc, _) in enumerate(ranking, start=1):
            total[doc] = total.get(doc, 0.0) + weight / (k + rank)
    return sorted(total.items(), key=lambda kv: -kv[1])


def _score_fusion(*rankings, weights) -> list[tuple[str, float]]:
    """Weighted sum of each ranking's scores min-max scaled to [0, 1] over its own list (an id absent from a
    list gets 0 from it): a far-ahead first hit stays far ahead, which rank fusion cannot express.

    Example: _score_fusion([("a", .9), ("b", .5)], [("b", 9.), ("a", 1.)], weights=(.5, .5)) -> b .5, a .5
    """
    total: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights):
        scores = [s for _, s in ranking]
        low, span = min(scores, default=0.0), (max(scores, default=0.0) - min(scores, default=0.0)) or 1.0
        for doc, score in ranking:
            total[doc] = total.get(doc, 0.0) + weight * (score - low) / span
    return sorted(total.items(), key=lambda kv: -kv[1])


def _prediction(row: dict, found: list[tuple[str, float]]) -> dict:
    return {"id": row.get("id"), "query": row["query"], "ranked": [d for d, _ in found],
            "scores": [round(s, 5) for _, s in found]}


def _measure(model, tokenizer, rows, cfg) -> dict:
    """Standardiser statistics from up to 512 training texts (queries and their positive passages), seeded."""
    corpus = _corpus(cfg)
    texts = [cfg.task.query_prefix + r["query"] for r in rows] + \
        [cfg.task.passage_prefix + corpus.text(p) for r in rows for p in r["positive_ids"]]
    texts = random.Random(cfg.train.seed).sample(texts, min(512, len(texts)))
    stats = encoder.measure_standardizer(model, tokenizer, texts, cfg.task.pooling, cfg.model.max_length)
    log.info("standardizer measured on %d training texts (per-dimension std %.3g .. %.3g)", len(texts),
             min(stats["std"]), max(stats["std"]))
    return stats


def _hidden_size(model) -> int:
    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    return config.hidden_size


def retrieval_model(model: str, corpus: str | None, pooling: str | None = None):
    """(task, cfg, state, weights folder) of a retrieval run folder, or of a plain model with `pooling`."""
    from pathlib import Path

    from tasktune.config import config_from_dict
    from tasktune.models.loading import resolve_model

    meta_path = Path(model) / "best" / "tasktune.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta["task"] != "retrieval":
            raise UserError(f"'{model}' is a {meta['task']} run; an index needs a retrieval run or a model")
        cfg = config_from_dict(meta["config"], str(meta_path))
        if corpus:
            cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update={"corpus": corpus})})
        return Retrieval(), cfg, meta["state"], str(meta_path.parent)
    if not corpus:
        raise UserError("--corpus is needed with a model that is not a retrieval run")
    cfg = config_from_dict({"task": {"name": "retrieval", "corpus": corpus, "pooling": pooling or "mean"},
                            "model": {"name": model}}, "index")
    path = resolve_model(model)
    return Retrieval(), cfg, Retrieval().state_from_model(path, cfg, []), path


def loaded(task, cfg, state, weights):
    """(model on the GPU where there is one, tokenizer) for inference."""
    from tasktune.models.loading import to_device

    model, tok = task.build_model(weights, cfg, state, for_training=False)
    return to_device(model), tok


def index_identity(model: str, cfg, state, weights: str) -> dict:
    """What an index records of the model that built it (a search with another model is refused)."""
    from tasktune.models.peft_adapters import weights_sha256

    combine = None if cfg.task.combine == "none" else f"{cfg.task.combine} {cfg.task.combine_weight:g}"
    return {"model": model, "weights_sha256": weights_sha256(weights), "pooling": cfg.task.pooling,
            "standardized": bool(state.get("standardizer")), "max_length": cfg.model.max_length, "combine": combine}


def search_index(folder: str, queries: list[str], k: int, model: str | None = None) -> list[list[dict]]:
    """The k best passages {id, score, text} of each query in a saved index, embedded by the model that built it."""
    from tasktune.retrieval.index import check_identity, load_index, search_vectors

    found, ids, meta = load_index(folder)
    task, cfg, state, weights = retrieval_model(model or meta["model"], meta["corpus"], meta["pooling"])
    check_identity(meta, index_identity(model or meta["model"], cfg, state, weights), folder)
    net, tok = loaded(task, cfg, state, weights)
    vectors = embed_texts(net, tok, [cfg.task.query_prefix + q for q in queries], cfg, state.get("standardizer"),
                          desc="queries")
    corpus = _corpus(cfg)
    return [[{"id": d, "score": round(s, 5), "text": corpus.text(d)} for d, s in row]
            for row in search_vectors(found, ids, vectors, k)]
