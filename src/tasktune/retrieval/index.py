"""A faiss vector index over a corpus: build (embeddings in length-sorted batches, written in chunks),
save with the model's identity, load, search.

Inner product over L2-normalised embeddings is cosine similarity. `flat` (exact) is the default;
`ivf` (inverted lists, trained on the corpus) and `hnsw` (graph) trade a little recall for speed on
large corpora. The folder holds `index.faiss`, `ids.json` and `index.json` (model name, weights
sha256, pooling, dimensions, corpus sha256): searching with another model is refused.

Example:
    build_index(model_dir, "passages.jsonl", "idx/")
    search("idx/", ["什么是BM25？"], k=5)     # [[{"id": ..., "score": ..., "text": ...}, ...]]
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tasktune.atomic import write_json
from tasktune.errors import UserError

log = logging.getLogger("tasktune")
CHUNK = 4096  # corpus rows embedded and added per chunk: memory stays bounded for a large corpus


def make_index(kind: str, dim: int, n: int):
    """An empty faiss index for inner-product search: flat, ivf (sqrt(n) lists, an eighth probed) or hnsw (32 links)."""
    import faiss

    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        return faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    if kind == "ivf":
        lists = max(1, int(n ** 0.5))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
        # faiss searches one list by default, which misses a good share of the true top 10; an eighth of the
        # lists (at least 8) keeps most of it at a fraction of a flat search. Saved with the index.
        index.nprobe = min(lists, max(8, lists // 8))
        return index
    raise UserError(f"unknown index kind '{kind}'; choose flat, ivf or hnsw")


def build_index(embed_fn, corpus, out: str | Path, identity: dict, kind: str = "flat") -> dict:
    """Embed `corpus` (retrieval.corpus.Corpus) chunk by chunk with `embed_fn(texts) -> array` and save the
    index in `out` with `identity` (model name, weights sha256, pooling...). Returns index.json's content."""
    import faiss
    import numpy as np
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index, n = None, len(corpus.ids)
    bar = tqdm(total=n, desc="index", unit="passage")
    for start in range(0, n, CHUNK):
        vecs = np.ascontiguousarray(embed_fn(list(corpus.texts[start:start + CHUNK])), dtype=np.float32)
        if index is None:
            index = make_index(kind, vecs.shape[1], n)
            if kind == "ivf":  # trained on the first chunk: it is a sample of the corpus
                index.train(vecs)
        index.add(vecs)
        bar.update(len(vecs))
    bar.close()
    tmp = out / "index.faiss.tmp"
    faiss.write_index(index, str(tmp))
    tmp.rename(out / "index.faiss")
    write_json(out / "ids.json", list(corpus.ids))
    meta = {**identity, "kind": kind, "size": n, "dim": index.d, "corpus": corpus.path, "corpus_sha256": corpus.sha256}
    write_json(out / "index.json", meta)
    log.info("index of %d passages (%s, dim %d) -> %s", n, kind, index.d, out)
    return meta


def load_index(folder: str | Path):
    """(faiss index, ids, index.json) of a saved index folder; UserError when it is not one."""
    import faiss

    folder = Path(folder)
    if not (folder / "index.json").is_file():
        raise UserError(f"'{folder}' is not a tasktune index (no index.json); build one with `tasktune index build`")
    meta = json.loads((folder / "index.json").read_text(encoding="utf-8"))
    ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
    return faiss.read_index(str(folder / "index.faiss")), ids, meta


def check_identity(meta: dict, identity: dict, folder: str) -> None:
    """Refuse to search an index with a model other than the one that built it."""
    for key in ("weights_sha256", "pooling", "standardized", "combine"):
        if meta.get(key) != identity.get(key):
            raise UserError(f"index '{folder}' was built by {meta.get('model')} ({key} {meta.get(key)}), not "
                            f"{identity.get('model')} ({identity.get(key)}); rebuild it with this model "
                            "(tasktune index build)")


def search_vectors(index, ids: list[str], queries, k: int) -> list[list[tuple[str, float]]]:
    """The k best (id, score) of each query vector, best first."""
    import numpy as np

    if k > len(ids):
        raise UserError(f"k={k} is larger than the corpus ({len(ids)} passages); choose k <= {len(ids)}")
    scores, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return [[(ids[j], float(s)) for j, s in zip(row_ids, row_scores) if j >= 0]
            for row_ids, row_scores in zip(found, scores)]
