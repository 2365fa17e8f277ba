"""A retrieval corpus: rows {id, text} read once per file, checked, addressable by id.

Example:
    corpus = read_corpus("passages.jsonl")
    corpus.texts[corpus.index["p17"]]
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from tasktune.errors import UserError


@dataclass(frozen=True)
class Corpus:
    path: str
    ids: tuple[str, ...]
    texts: tuple[str, ...]
    sha256: str

    @functools.cached_property
    def index(self) -> dict[str, int]:
        return {d: i for i, d in enumerate(self.ids)}

    def text(self, doc_id: str) -> str:
        return self.texts[self.index[doc_id]]


def read_corpus(path: str, columns: tuple[tuple[str, str], ...] = ()) -> Corpus:
    """The corpus at `path` (jsonl/json/csv/tsv/parquet with `id` and `text`; `columns` maps them).

    Cached per file content (path, size, modification time), so a task's row checks and its model
    read one parse. Raises UserError naming the file and line of an empty text or a duplicate id.
    """
    try:
        stat = os.stat(path)
    except OSError:
        raise UserError(f"corpus file '{path}' not found; check task.corpus") from None
    return _read(os.path.abspath(path), stat.st_size, stat.st_mtime_ns, columns)


@functools.lru_cache(maxsize=4)
def _read(path: str, size: int, mtime: int, columns: tuple) -> Corpus:
    from tasktune.data.readers import map_columns, read_table
    from tasktune.fingerprint import sha256_files

    table = read_table(path)
    rows = map_columns(table, dict(columns), ["id", "text"], [])
    seen: dict[str, int] = {}
    for i, row in enumerate(rows):
        doc_id, text = str(row["id"]), row["text"]
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{table.where(i)}: empty corpus text for id '{doc_id}'; fill it in or remove the row")
        if doc_id in seen:
            raise UserError(f"{table.where(i)}: duplicate corpus id '{doc_id}' (also {table.where(seen[doc_id])}); "
                            "ids must be unique")
        seen[doc_id] = i
    if not rows:
        raise UserError(f"corpus file '{path}' has no rows")
    return Corpus(path, tuple(str(r["id"]) for r in rows), tuple(r["text"] for r in rows), sha256_files([path]))
