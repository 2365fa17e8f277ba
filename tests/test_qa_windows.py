"""Sliding windows and span decoding: gold answers survive the trip to tokens and back."""

from __future__ import annotations

import math

import pytest
import torch
from qa_data import make_records, qa_rows

from tasktune.models.loading import load_tokenizer
from tasktune.tasks.qa_spans import NO_SPAN, SpanCollator, decode, make_features, top_spans


@pytest.mark.parametrize("model", ["qa_bert", "qa_qwen"])
def test_every_gold_answer_is_recovered_from_window_offsets(model, request):
    tok = load_tokenizer(request.getfixturevalue(model), "right")
    rows = [r for r in qa_rows(make_records(24, seed=5, long_every=1)) if r["answers"]]
    assert any("姓名" in r["context"] for r in rows) and any("Name:" in r["context"] for r in rows)
    feats = make_features(tok, rows, max_length=48, stride=16, labelled=True)
    windows = [sum(f["_row"] == i for f in feats) for i in range(len(rows))]
    assert min(windows) >= 2  # long contexts really are cut into several windows
    for i, row in enumerate(rows):
        answer = row["answers"][0]
        found = set()
        for f in feats:
            if f["_row"] == i and f["labels"][0] > 0:
                s, e = f["labels"][0] - 1, f["labels"][1] - 1  # label positions are shifted by the null slot
                assert f["context_mask"][s] == f["context_mask"][e] == 1
                found.add((f["_offsets"][s][0], f["_offsets"][e][1]))
        assert found, f"no window holds the answer of {row['id']}"
        for start, end in found:
            recovered = row["context"][start:end]
            # byte-level BPE may glue a neighbouring mark onto the answer; WordPiece splits every CJK character
            assert recovered == answer["text"] if model == "qa_bert" else answer["text"] in recovered.strip("：:. 。")


def test_windows_without_the_answer_get_the_null_label(qa_bert):
    tok = load_tokenizer(qa_bert, "right")
    rows = [r for r in qa_rows(make_records(8, seed=5, long_every=1)) if r["answers"]][:4]
    feats = make_features(tok, rows, max_length=48, stride=16, labelled=True)
    assert any(f["labels"] == [0, 0, 0] for f in feats)
    assert all(f["labels"][2] == len(rows[f["_row"]]["answers"][0]["text"]) for f in feats if f["labels"][0])


@pytest.mark.parametrize("rank", [0, 3])  # 3: a bilinear start-end term in channels 2: (u then v)
def test_top_spans_is_the_exhaustive_best_within_the_band(rank):
    torch.manual_seed(0)
    length, max_tokens = 12, 4
    logits = torch.randn(3, 1 + length, 2 + 2 * rank)

    def pair(b, i, j):
        return (logits[b, 1 + i, 2:2 + rank] * logits[b, 1 + j, 2 + rank:]).sum() if rank else 0.0
    ctx = torch.ones(3, length, dtype=torch.bool)
    ctx[:, :3] = False  # question tokens
    ctx[2, 9:] = False  # padding of a shorter window
    logits[:, 1:, :2] = logits[:, 1:, :2].masked_fill(~ctx.unsqueeze(-1), torch.finfo(torch.float32).min)
    out = top_spans(logits, max_tokens, n_best=5)
    for b in range(3):
        brute = sorted(((logits[b, 1 + i, 0] + logits[b, 1 + j, 1] + pair(b, i, j)).item(), i, j)
                       for i in range(length) for j in range(i, min(length, i + max_tokens))
                       if ctx[b, i] and ctx[b, j])[::-1][:5]
        assert out[b, 0].item() == pytest.approx((logits[b, 0, 0] + logits[b, 0, 1]).item())
        got = [(out[b, 3 + 3 * k].item(), int(out[b, 1 + 3 * k]), int(out[b, 2 + 3 * k])) for k in range(5)]
        assert [(i, j) for _, i, j in got] == [(i, j) for _, i, j in brute]
        assert [s for s, _, _ in got] == pytest.approx([s for s, _, _ in brute])


def test_decode_merges_windows_and_applies_the_threshold():
    row = {"context": "abcdefghij", "question": "q"}
    offsets = [None] + [(i, i + 1) for i in range(10)]
    feats = [{"_row": 0, "_offsets": offsets}, {"_row": 0, "_offsets": offsets}]
    # window 1: null 2.0, best span chars 2..4 score 5; window 2: null 1.0, same span score 4, another 3
    outputs = [[2.0, 3, 4, 5.0, 1, 1, 1.0], [1.0, 3, 4, 4.0, 6, 7, 3.0]]
    pred = decode([row], feats, outputs, lambda r: 0.0, n_best=3)[0]
    assert pred["null_score"] == 1.0  # the lowest over windows
    assert pred["answer"] == "cd" and (pred["start"], pred["end"]) == (2, 4) and pred["score"] == 4.0
    assert [c["text"] for c in pred["candidates"]] == ["cd", "fg", "a"]
    assert decode([row], feats, outputs, lambda r: 4.5, n_best=3)[0]["answer"] is None
    empty = decode([row], feats[:1], [[0.5, -1, -1, NO_SPAN, -1, -1, NO_SPAN]], lambda r: 0.0, 3)[0]
    assert empty["answer"] is None and empty["candidates"] == [] and not math.isnan(empty["null_score"])


def test_collator_pads_right(qa_qwen):
    tok = load_tokenizer(qa_qwen, "right")
    rows = qa_rows(make_records(2, seed=1))[:2]
    feats = make_features(tok, rows, max_length=64, stride=16, labelled=True)
    batch = SpanCollator(tok.pad_token_id)(feats[:2])
    assert batch["input_ids"].shape == batch["context_mask"].shape and batch["labels"].shape == (2, 3)
    for i, f in enumerate(feats[:2]):
        n = len(f["input_ids"])
        assert batch["attention_mask"][i, :n].all() and not batch["attention_mask"][i, n:].any()
