"""Sliding windows over long contexts, and spans back to characters: the mechanics of extractive QA.

Plain functions used by `tasks/extractive_qa.py`:
- `make_features`: (question, context) rows -> token windows of at most `max_length` tokens,
  consecutive windows overlapping by `stride` tokens, each with its context mask, its token ->
  character offsets and, for labelled rows, the answer's token span (or the null label 0, 0).
- `SpanCollator`: pads windows on the right into a batch.
- `top_spans`: (batch, 1 + length, 2) logits -> the null score and the n best valid spans of each
  window (start <= end, both in the context, at most `max_answer_tokens` long). The search is
  exhaustive over that band, so the n best are exact, not a top-k-starts x top-k-ends guess.
- `decode`: windows' spans -> one answer per row in character offsets of the original context,
  with the no-answer decision `best span score - null score > threshold`.

Example:
    feats = make_features(tok, rows, max_length=384, stride=128, labelled=True)
    batch = SpanCollator(tok.pad_token_id)(feats[:8])
"""

from __future__ import annotations

import math

NO_SPAN = -1e30  # score of a missing candidate (fewer valid spans than n_best)


def _question_prefixes(tokenizer, questions: list[str], max_question_tokens: int) -> list[str]:
    """The questions, each cut to `max_question_tokens` (one batched tokenizer call), ended by a newline
    where the tokenizer has no separator token (decoders), so question and context do not run together."""
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out = []
    for question, ids, offsets in zip(questions, enc["input_ids"], enc["offset_mapping"]):
        if len(ids) > max_question_tokens:
            question = question[:offsets[max_question_tokens - 1][1]]
        out.append(question if tokenizer.sep_token else question.rstrip() + "\n")
    return out


def _token_span(offsets: list, ctx: list[int], start: int, end: int) -> tuple[int, int] | None:
    """Token indices (first, last) of the context tokens covering characters [start, end), or None
    when the window does not hold the whole answer."""
    if offsets[ctx[0]][0] > start or offsets[ctx[-1]][1] < end:
        return None
    first = next(t for t in ctx if offsets[t][1] > start)
    last = next(t for t in reversed(ctx) if offsets[t][0] < end)
    return (first, last) if first <= last else None


def make_features(tokenizer, rows: list[dict], max_length: int, stride: int, labelled: bool) -> list[dict]:
    """Token windows of every row; each feature remembers its row index (`_row`) and offsets."""
    # Questions are cut so that every window keeps room for the overlap plus new context (config
    # guarantees stride < max_length / 2).
    max_question = max(4, min(max_length // 2, max_length - stride - 8))
    questions = _question_prefixes(tokenizer, [r["question"] for r in rows], max_question)
    enc = tokenizer(questions, [r["context"] for r in rows], truncation="only_second", max_length=max_length,
                    stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    feats = []
    for i, row_index in enumerate(enc["overflow_to_sample_mapping"]):
        seq = enc.sequence_ids(i)
        ctx = [t for t, s in enumerate(seq) if s == 1]
        offsets = [tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq)]
        f = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "context_mask": [int(s == 1) for s in seq], "_row": row_index, "_offsets": offsets}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        if labelled and ctx:
            f["labels"] = _labels(rows[row_index], offsets, ctx)
        feats.append(f)
    return feats


def _labels(row: dict, offsets: list, ctx: list[int]) -> list[int]:
    """[start, end, answer characters]: positions shifted by one (0 is the null label)."""
    answers = row.get("answers") or []
    if answers:
        a = answers[0]
        span = _token_span(offsets, ctx, a["start"], a["start"] + len(a["text"]))
        if span:
            return [span[0] + 1, span[1] + 1, len(a["text"])]
    return [0, 0, 0]


class SpanCollator:
    """Pads windows on the right; keys starting with '_' stay with the features (not the model)."""

    def __init__(self, pad_token_id: int | None):
        self.pad = pad_token_id if pad_token_id is not None else 0

    def __call__(self, feats: list[dict]) -> dict:
        import torch

        width = max(len(f["input_ids"]) for f in feats)
        batch = {}
        for key, fill in (("input_ids", self.pad), ("attention_mask", 0), ("context_mask", 0), ("token_type_ids", 0)):
            if key in feats[0]:
                batch[key] = torch.tensor([f[key] + [fill] * (width - len(f[key])) for f in feats])
        if "labels" in feats[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in feats])
        batch["loss_items"] = len(feats)  # the loss sums over windows
        return batch


def pair_halves(logits):
    """The pair term's (u, v) channels of span logits (..., 2 + 2 * width): u(start) . v(end) is added to a span's
    score (`models/span_head`: bilinear, span length prior); both empty when the logits have 2 channels."""
    rank = (logits.shape[-1] - 2) // 2
    return logits[..., 2:2 + rank], logits[..., 2 + rank:]


def top_spans(logits, max_answer_tokens: int, n_best: int):
    """(batch, 1 + length, 2) logits -> (batch, 1 + 3 * n_best): null score, then (start, end, score)
    of the n best valid spans in token positions of the window (score NO_SPAN where none is left).
    With a bilinear scorer's extra channels, a span's score adds u(start) . v(end)."""
    import torch

    logits = logits.float()
    null = logits[:, 0, 0] + logits[:, 0, 1]
    start, end = logits[:, 1:, 0], logits[:, 1:, 1]
    valid_start = start > torch.finfo(torch.float32).min / 2
    length = start.shape[1]
    width = min(max_answer_tokens, length)
    # band[b, i, k] = score of the span (i, i + k); invalid where either end is outside the context.
    band = torch.full((start.shape[0], length, width), -math.inf, device=logits.device)
    u, v = pair_halves(logits[:, 1:])
    rank = u.shape[-1]  # > 0: a pair term rides in channels 2: (models/span_head)
    for k in range(width):
        ok = valid_start[:, : length - k] & valid_start[:, k:]
        score = start[:, : length - k] + end[:, k:]
        if rank:
            score = score + (u[:, : length - k] * v[:, k:]).sum(-1)
        band[:, : length - k, k] = torch.where(ok, score, -math.inf)
    n = min(n_best, length * width)
    scores, idx = band.flatten(1).topk(n, dim=1)
    first, span = idx // width, idx % width
    out = torch.full((start.shape[0], 1 + 3 * n_best), NO_SPAN, device=logits.device)
    out[:, 0] = null
    found = torch.isfinite(scores)
    out[:, 1:1 + 3 * n:3] = torch.where(found, first.float(), -1.0)
    out[:, 2:2 + 3 * n:3] = torch.where(found, (first + span).float(), -1.0)
    out[:, 3:3 + 3 * n:3] = torch.where(found, scores, NO_SPAN)
    return out


def decode(rows: list[dict], feats: list[dict], outputs: list[list[float]], thresholds, n_best: int) -> list[dict]:
    """One answer per row from its windows' `top_spans` outputs.

    `thresholds(row)` gives the row's null threshold. The row's null score is the lowest over its
    windows (the window that most believes an answer is there), its span candidates the best over
    all windows, merged by character span. Returns dicts with answer (None = no answer), start,
    end (characters, end exclusive), score, null_score, candidates.
    """
    per_row: list[dict] = [{"null": math.inf, "cands": {}} for _ in rows]
    for f, out in zip(feats, outputs):
        acc = per_row[f["_row"]]
        acc["null"] = min(acc["null"], out[0])
        for s, e, score in zip(out[1::3], out[2::3], out[3::3]):
            if score <= NO_SPAN / 2:
                continue
            key = _trim(rows[f["_row"]]["context"], f["_offsets"][int(s)][0], f["_offsets"][int(e)][1])
            if key[0] < key[1]:
                acc["cands"][key] = max(acc["cands"].get(key, -math.inf), score)
    results = []
    for row, acc in zip(rows, per_row):
        ranked = sorted(acc["cands"].items(), key=lambda kv: -kv[1])[:n_best]
        cands = [{"text": row["context"][s:e], "start": s, "end": e, "score": round(sc, 4)}
                 for (s, e), sc in ranked]
        null = acc["null"] if math.isfinite(acc["null"]) else 0.0
        results.append({"candidates": cands, "null_score": round(null, 4)})
        decide(results[-1], thresholds(row))
    return results


def _trim(context: str, start: int, end: int) -> tuple[int, int]:
    # Byte-level BPE tokens carry their leading space (" King"): answers should not.
    while start < end and context[start].isspace():
        start += 1
    while end > start and context[end - 1].isspace():
        end -= 1
    return start, end


def decide(pred: dict, threshold: float) -> dict:
    """Set pred's answer/start/end/score from its candidates: answer iff best - null > threshold."""
    best = pred["candidates"][0] if pred["candidates"] else None
    answered = best is not None and best["score"] - pred["null_score"] > threshold
    pred.update(answer=best["text"] if answered else None, start=best["start"] if answered else None,
                end=best["end"] if answered else None,
                score=round(best["score"] - pred["null_score"], 4) if best else None)
    return pred


def fit_threshold(margins: list[float | None], f1_answered: list[float], f1_null: list[float]) -> tuple[float, float]:
    """The null threshold maximising mean F1, and that F1.

    Row i answers when margins[i] (best span - null score; None = no candidate) > threshold, scoring
    f1_answered[i], else f1_null[i]. Thresholds between consecutive margins are all tried (the
    SQuAD v2.0 'best threshold' search).
    """
    order = sorted((i for i, m in enumerate(margins) if m is not None), key=lambda i: -margins[i])
    total = sum(f1_null)
    best_total, best_t = total, (margins[order[0]] + 1.0) if order else 0.0
    for pos, i in enumerate(order):
        total += f1_answered[i] - f1_null[i]
        nxt = margins[order[pos + 1]] if pos + 1 < len(order) else margins[i] - 2.0
        if nxt < margins[i] and total > best_total + 1e-12:  # a cut only between distinct margins
            best_total, best_t = total, (margins[i] + nxt) / 2
    return best_t, 100 * best_total / max(len(margins), 1)
