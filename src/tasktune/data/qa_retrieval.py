"""`tasktune data convert --from qa-retrieval`: an extractive-QA file becomes a retrieval set.

Queries are the questions; the corpus is the contexts, whole or cut into chunks of at most
`chunk_chars` characters at sentence ends (。！？；.!?; and line breaks), consecutive chunks sharing
up to `overlap` characters of whole sentences. A question's positives are the chunks that hold its
whole answer (else the chunk holding the answer's start). Questions without an answer are left out
(counted). Each query keeps its context as `group`, so a split keeps a paragraph's questions together.

Input: tasktune QA rows (jsonl/json/csv...: question, context, answers) or SQuAD / CMRC 2018 JSON.
Output folder: corpus.jsonl {id, text, context_id} and queries.jsonl {id, query, positive_ids, group}.

Example: qa_to_retrieval("cmrc2018_trial.json", "cmrc_ret/", chunk_chars=120)   # {'chunks': 1406, ...}
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tasktune.atomic import write_json, write_jsonl
from tasktune.errors import UserError

_SENTENCE_END = re.compile(r"(?<=[。！？；!?;\n])|(?<=\.)(?=\s)")


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of `text`, covering it without gaps."""
    cuts = [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]
    spans, start = [], 0
    for cut in cuts:
        if cut > start:
            spans.append((start, cut))
            start = cut
    return spans


def chunks(text: str, size: int | None, overlap: int = 0) -> list[tuple[int, int]]:
    """(start, end) spans of chunks of at most `size` characters made of whole sentences (a longer sentence
    is cut hard); consecutive chunks repeat up to `overlap` characters of sentences. None: the whole text."""
    if size is None:
        return [(0, len(text))]
    pieces = []
    for s, e in sentences(text):
        pieces += [(p, min(p + size, e)) for p in range(s, e, size)]
    out, i = [], 0
    while i < len(pieces):
        j, start = i, pieces[i][0]
        while j + 1 < len(pieces) and pieces[j + 1][1] - start <= size:
            j += 1
        out.append((start, pieces[j][1]))
        if j + 1 >= len(pieces):
            break
        back = j + 1  # the next chunk starts with the last sentences that fit in `overlap`
        while back - 1 > i and pieces[j][1] - pieces[back - 1][0] <= overlap:
            back -= 1
        i = back
    return out


def _qa_rows(path: str) -> list[dict]:
    from tasktune.data.convert import answers_cell, from_squad
    from tasktune.data.readers import read_table

    if path.endswith(".json"):
        try:
            if "data" in json.loads(Path(path).read_text(encoding="utf-8-sig")):
                return from_squad(path)[0]
        except (json.JSONDecodeError, TypeError):
            pass
    rows = read_table(path).rows
    for r in rows:
        r["answers"] = answers_cell(r.get("answers")) or []
    return rows


def qa_to_retrieval(input: str, out: str, chunk_chars: int | None = None, overlap: int = 0,
                    overwrite: bool = False) -> dict:
    """Write corpus.jsonl and queries.jsonl into the folder `out`; returns the counts (also in convert.json)."""
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise UserError(f"output folder '{out}' is not empty; pass --overwrite or choose another folder")
    if chunk_chars is not None and overlap >= chunk_chars:
        raise UserError(f"--overlap {overlap} must be below --chunk-chars {chunk_chars}")
    contexts: dict[str, str] = {}
    corpus, queries, skipped = [], [], 0
    spans_of: dict[str, list[tuple[str, int, int]]] = {}
    for row in _qa_rows(input):
        context = row.get("context") or ""
        cid = contexts.setdefault(context, f"c{len(contexts)}")
        if cid not in spans_of:
            spans_of[cid] = []
            for k, (s, e) in enumerate(chunks(context, chunk_chars, overlap)):
                doc = f"{cid}-{k}" if chunk_chars else cid
                spans_of[cid].append((doc, s, e))
                corpus.append({"id": doc, "text": context[s:e], "context_id": cid})
        answers = row.get("answers") or []
        if not answers:
            skipped += 1
            continue
        a = answers[0]
        start, end = a["start"], a["start"] + len(a["text"])
        whole = [d for d, s, e in spans_of[cid] if s <= start and end <= e]
        positives = whole or [d for d, s, e in spans_of[cid] if s <= start < e][:1]
        queries.append({"id": str(row.get("id") or f"q{len(queries)}"), "query": row["question"],
                        "positive_ids": positives, "group": cid})
    write_jsonl(folder / "corpus.jsonl", corpus)
    write_jsonl(folder / "queries.jsonl", queries)
    counts = {"contexts": len(contexts), "passages": len(corpus), "queries": len(queries),
              "left_out_no_answer": skipped, "chunk_chars": chunk_chars, "overlap": overlap}
    write_json(folder / "convert.json", {"input": str(input), **counts})
    return counts
