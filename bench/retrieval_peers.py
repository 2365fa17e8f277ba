"""Benchmark (not a test): tasktune's retrieval tools against sentence-transformers on the same model and data.

Data: the CMRC 2018 trial chunk corpus of `bench/retrieval.py` (made here when absent) and its first
`--queries` questions. Model: gemma-3-270m, causal attention, mean pooling, L2 norm, fp32 on CPU.

1. Mining: `tasktune mine` against `sentence_transformers.util.mine_hard_negatives` (faiss, sampling
   "top", the same 5 negatives per query, every query kept, no similarity ceiling on either side so the
   rule is the same): wall time and peak RSS of each command (model load included), and the overlap of
   the two negative sets per query (they should agree: same model, same rule).
2. Training: `tasktune train` (InfoNCE at temperature 0.05 = MultipleNegativesRankingLoss scale 20,
   one mined hard negative per query, batch 8, LoRA r 8 on all linear layers, lr 2e-4, 1 epoch)
   against SentenceTransformerTrainer with the same model, LoRA, loss, batch, rows and a no-duplicates
   sampler: training pairs per second as each trainer reports it.
3. Index: `tasktune index build` (flat) time and peak RSS; then search throughput of flat, ivf and
   hnsw over those vectors (the passages as queries) and the recall@10 of ivf / hnsw against flat.

Run: python bench/retrieval_peers.py [--queries 400] [--train-rows 160] [--parts training]
     (quick check: --queries 16 --passages 40 --out /tmp/peers.json)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from retrieval import DATA, chunk_set
from subprocess_runs import measured, runs_folder

ROOT = Path(__file__).parents[1]
MODEL, MAX_LEN, NEGATIVES = "gemma-3-270m", 256, 5  # 256: tasktune mine's default max_length


def st_model():
    from sentence_transformers import SentenceTransformer, models

    from tasktune.models.loading import resolve_model

    # Plain text, as tasktune encodes it: sentence-transformers would otherwise wrap each text in gemma's chat template.
    backbone = models.Transformer(resolve_model(MODEL), max_seq_length=MAX_LEN, module_output_name="token_embeddings",
                                  modality_config={"text": {"method": "forward", "method_output_name": "last_hidden_state"}})
    return SentenceTransformer(modules=[backbone, models.Pooling(backbone.get_word_embedding_dimension(), "mean"),
                                        models.Normalize()], device="cpu")


def st_mine(queries: str, corpus: str, out: str) -> None:
    """sentence-transformers' mining of the same queries; writes {query_id, negative_ids} rows."""
    from datasets import Dataset
    from sentence_transformers.util import mine_hard_negatives

    passages = [json.loads(x) for x in Path(corpus).read_text(encoding="utf-8").splitlines()]
    text_id = {}
    for p in passages:
        text_id.setdefault(p["text"], p["id"])
    rows = [json.loads(x) for x in Path(queries).read_text(encoding="utf-8").splitlines()]
    by_id = {p["id"]: p["text"] for p in passages}
    ds = Dataset.from_dict({"query": [r["query"] for r in rows], "positive": [by_id[r["positive_ids"][0]] for r in rows]})
    mined = mine_hard_negatives(ds, st_model(), corpus=[p["text"] for p in passages], num_negatives=NEGATIVES,
                                sampling_strategy="top", range_max=NEGATIVES + 20, output_format="n-tuple",
                                use_faiss=True, batch_size=32, verbose=False)
    # n-tuple output drops a query without enough negatives; match rows back by query text.
    found = {m["query"]: [text_id[m[f"negative_{i}"]] for i in range(1, NEGATIVES + 1)] for m in mined}
    Path(out).write_text("".join(json.dumps({"query_id": r["id"], "negative_ids": found.get(r["query"], [])},
                                            ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def st_train(rows_path: str, corpus: str, out: str, batch: int) -> None:
    """SentenceTransformerTrainer on (query, positive, first negative) with MNRL and LoRA; prints its metrics."""
    from datasets import Dataset
    from peft import LoraConfig
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers

    text = {p["id"]: p["text"] for p in map(json.loads, Path(corpus).read_text(encoding="utf-8").splitlines())}
    rows = [json.loads(x) for x in Path(rows_path).read_text(encoding="utf-8").splitlines()]
    ds = Dataset.from_dict({"anchor": [r["query"] for r in rows], "positive": [text[r["positive_ids"][0]] for r in rows],
                            "negative": [text[r["negative_ids"][0]] for r in rows]})
    model = st_model()
    model.add_adapter(LoraConfig(task_type="FEATURE_EXTRACTION", r=8, lora_alpha=16, lora_dropout=0.0,
                                 target_modules="all-linear"))
    args = SentenceTransformerTrainingArguments(
        output_dir=out, num_train_epochs=1, per_device_train_batch_size=batch, learning_rate=2e-4, warmup_ratio=0.1,
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="epoch", logging_steps=5, report_to="none",
        bf16=False, seed=0)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=ds,
                                         loss=MultipleNegativesRankingLoss(model, scale=20.0))
    print(json.dumps(trainer.train().metrics))


def tasktune_train(rows: Path, corpus: Path, folder: Path, batch: int) -> dict:
    args = [f"task.corpus={corpus}", "task.pooling=mean", "task.standardize=false", "task.loss=infonce",
            "task.temperature=0.05", "task.negatives_per_query=1", f"model.name={MODEL}", f"model.max_length={MAX_LEN}",
            "model.lora.r=8", "model.lora.alpha=16", "model.lora.dropout=0.0", "model.lora.target_modules=all-linear",
            f"data.train={rows}", "data.eval=null", "train.epochs=1", f"train.batch_size={batch}",
            "train.learning_rate=2e-4", "train.warmup_ratio=0.1", "train.seed=0", "baseline.after_training=false"]
    cfg = folder.parent / "peer_train.yaml"
    cfg.write_text("task: {name: retrieval}\n")
    run = measured([sys.executable, "-m", "tasktune", "train", str(cfg), *args, f"output_dir={folder}", "--overwrite"])
    history = json.loads((folder / "metrics_history.json").read_text())
    return {**{k: run[k] for k in ("seconds", "peak_rss_gib")},
            "train_samples_per_second": next(h for h in history if "train_runtime" in h)["train_samples_per_second"]}


def index_speed(idx: Path) -> dict:
    """Search throughput of flat / ivf / hnsw over the built index's vectors, and ivf / hnsw recall@10 vs flat."""
    import faiss
    import numpy as np

    from tasktune.retrieval.index import make_index

    flat = faiss.read_index(str(idx / "index.faiss"))
    vecs = flat.reconstruct_n(0, flat.ntotal)
    out, exact = {}, None
    for kind in ("flat", "ivf", "hnsw"):
        index = make_index(kind, vecs.shape[1], len(vecs))
        if kind == "ivf":
            index.train(vecs)
        index.add(vecs)
        start = time.perf_counter()
        _, found = index.search(vecs, 10)
        seconds = time.perf_counter() - start
        exact = found if exact is None else exact
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, exact)]))
        out[kind] = {"queries_per_s": round(len(vecs) / seconds, 1), "recall@10_vs_flat": round(recall, 4)}
    return out


def small_corpus(corpus: Path, queries: Path, n: int, out: Path) -> Path:
    """The first n passages of `corpus` and every positive of `queries`, written to `out`."""
    keep = {p for q in map(json.loads, queries.open(encoding="utf-8")) for p in q["positive_ids"]}
    lines = [x for i, x in enumerate(corpus.read_text(encoding="utf-8").splitlines(True))
             if i < n or json.loads(x)["id"] in keep]
    out.write_text("".join(lines), encoding="utf-8")
    return out


def mining_part(queries: Path, corpus: Path, peers: Path) -> dict:
    ours = measured([sys.executable, "-m", "tasktune", "mine", "--model", MODEL, "--pooling", "mean", "--queries",
                     str(queries), "--corpus", str(corpus), "--out", str(peers / "tt_mined.jsonl"), "--negatives",
                     str(NEGATIVES), "--max-similarity", "1.0", "--keep-easy"])
    theirs = measured([sys.executable, __file__, "--_st", "mine", str(queries), str(corpus), str(peers / "st_mined.jsonl")])
    tt = {r["query_id"]: r["negative_ids"] for r in map(json.loads, (peers / "tt_mined.jsonl").open(encoding="utf-8"))}
    st = {r["query_id"]: r["negative_ids"] for r in map(json.loads, (peers / "st_mined.jsonl").open(encoding="utf-8"))}
    both = [q for q in tt if st.get(q)]
    return {"tasktune": {k: ours[k] for k in ("seconds", "peak_rss_gib")},
            "sentence_transformers": {k: theirs[k] for k in ("seconds", "peak_rss_gib")},
            "queries_with_negatives": {"tasktune": sum(1 for v in tt.values() if v), "sentence_transformers": len(both)},
            "overlap_mean": round(sum(len(set(tt[q]) & set(st[q])) / NEGATIVES for q in both) / max(len(both), 1), 4),
            "identical_sets": sum(1 for q in both if set(tt[q]) == set(st[q]))}


def training_part(corpus: Path, peers: Path, train_rows: int, batch: int) -> dict:
    """Both trainers on the same rows: the first `train_rows` mined queries with their first negative."""
    rows = peers / "train_rows.jsonl"
    mined = [json.loads(x) for x in (peers / "tt_mined.jsonl").read_text(encoding="utf-8").splitlines()]
    rows.write_text("".join(json.dumps({"id": m["query_id"], "query": m["query"], "positive_ids": m["positive_ids"],
                                        "negative_ids": m["negative_ids"][:1]}, ensure_ascii=False) + "\n"
                            for m in mined[:train_rows]), encoding="utf-8")
    ours = tasktune_train(rows, corpus, peers / "tt_train", batch)
    theirs = measured([sys.executable, __file__, "--_st", "train", str(rows), str(corpus), str(peers / "st_train"),
                       str(batch)])
    st_speed = json.loads(theirs["stdout"].strip().splitlines()[-1])["train_samples_per_second"]
    return {"tasktune": ours, "sentence_transformers": {"seconds": theirs["seconds"], "peak_rss_gib": theirs["peak_rss_gib"],
                                                        "train_samples_per_second": st_speed},
            "ratio_tasktune_over_st": round(ours["train_samples_per_second"] / st_speed, 3)}


def index_part(corpus: Path, peers: Path, passages: int) -> dict:
    build = measured([sys.executable, "-m", "tasktune", "index", "build", "--model", MODEL, "--pooling", "mean",
                      "--corpus", str(corpus), "--out", str(peers / "index"), "--overwrite"])
    return {"build": {"seconds": build["seconds"], "peak_rss_gib": build["peak_rss_gib"],
                      "passages_per_s": round(passages / build["seconds"], 2)}, "search": index_speed(peers / "index")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queries", type=int, default=400)
    p.add_argument("--train-rows", type=int, default=160)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--parts", nargs="+", default=["mining", "training", "index"], choices=["mining", "training", "index"],
                   help="run these parts only (training needs mining's output); the others' results are kept")
    p.add_argument("--passages", type=int, default=0, help="a quick check: the first N passages plus the positives")
    p.add_argument("--runs", default="bench_runs/retrieval")
    p.add_argument("--out", default="bench/retrieval_peers.json")
    p.add_argument("--_st", nargs="+", help=argparse.SUPPRESS)  # internal: one peer step in its own process
    a = p.parse_args()
    if a._st:
        {"mine": st_mine, "train": st_train}[a._st[0]](*a._st[1:4], *map(int, a._st[4:]))
        return
    out = runs_folder(DATA, a.runs)
    if out is None:
        return
    data = chunk_set(out)
    corpus, peers = data / "corpus.jsonl", out / "peers"
    peers.mkdir(exist_ok=True)
    queries = peers / "queries.jsonl"
    queries.write_text("".join((data / "queries.jsonl").read_text(encoding="utf-8").splitlines(True)[:a.queries]),
                       encoding="utf-8")
    if a.passages:
        corpus = small_corpus(corpus, queries, a.passages, peers / "corpus.jsonl")
    import torch

    result = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}
    result.update(queries=a.queries, passages=sum(1 for _ in corpus.open(encoding="utf-8")),
                  cpu=torch.backends.cpu.get_cpu_capability())
    parts = {"mining": lambda: mining_part(queries, corpus, peers),
             "training": lambda: training_part(corpus, peers, a.train_rows, a.batch),
             "index": lambda: index_part(corpus, peers, result["passages"])}
    for name in a.parts:
        result[name] = parts[name]()
        print(name, json.dumps(result[name]), flush=True)
        Path(a.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")


if __name__ == "__main__":
    main()
