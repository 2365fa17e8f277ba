"""Benchmark (not a test): zero-shot label scoring throughput on this machine (issue 14 target: 20+ examples/s
on 2 cores), tasktune beside a plain transformers loop, measured in one run.

Rows: ChnSentiCorp reviews (../shared/data/chnsenticorp; skipped with a message when absent), the quickstart's
prompt and words (examples/sentiment_zh.yaml), gemma-3-270m, max length 128.
- tasktune: the classification task's own predict (what `tasktune eval --baseline` runs for zero-shot):
  length-sorted batches, logits at the last position only, bf16 only where fast.
- peer: the plain way, `model(**tokenizer(batch, padding=True))` in file order, log-softmax of the last
  position's logits (full logits at every position, as a causal LM returns them by default), batch 32, fp32.
The share of equal predictions is reported (the peer cuts a long prompt at its end, tasktune keeps the
prompt's question). Each side runs alone, model load excluded; examples/s over the rows. MFU: 2N FLOPs per
real token (N non-embedding parameters) against the matmul rate of the dtype tasktune ran in (fp32, or bf16
where `train.bf16: auto` turned it on), measured in the same run (bench/peak.py): the bound of any implementation.
--peer-bf16 runs the peer once more with the model loaded in bf16 (what a user with bf16 units might do).

Run: python bench/zero_shot_speed.py [--rows 500] [--peer-rows 200] [--peer-bf16] [--out F]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
DATA = Path(__file__).parents[2] / "shared" / "data" / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"
PROMPT = "评论：{text}\n情感（正面或负面）："
WORDS = {"negative": "负", "positive": "正面"}


def reviews(n: int) -> list[dict]:
    with open(DATA, encoding="utf-8-sig") as f:
        rows = [r for r in csv.DictReader(f) if (r.get("review") or "").strip()]
    step = max(1, len(rows) // n)  # spread over the file (it is sorted by label)
    return [{"id": str(i), "text": r["review"], "label": "positive" if r["label"] == "1" else "negative"}
            for i, r in enumerate(rows[::step][:n])]


def tasktune_side(rows: list[dict]) -> tuple[float, list[str]]:
    from tasktune.config import load_config
    from tasktune.models.loading import resolve_model
    from tasktune.tasks import get_task

    cfg = load_config(None, ["task=classification", "model.name=gemma-3-270m", "model.max_length=128",
                             "task.method=label_scoring", f"task.prompt={json.dumps(PROMPT)}",
                             f"task.verbalizer={json.dumps(WORDS, ensure_ascii=False)}",
                             "task.labels=[negative, positive]"])
    task = get_task("classification")
    path = resolve_model("gemma-3-270m")
    state = task.setup(rows, cfg) if hasattr(task, "setup") else {}
    model, tok = task.build_model(path, cfg, state, for_training=False)
    start = time.perf_counter()
    preds = task.predict(model, tok, rows, cfg, state)
    return time.perf_counter() - start, [p["label"] for p in preds]


def peer_side(rows: list[dict], bf16: bool = False) -> tuple[float, list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasktune.models.loading import resolve_model

    path = resolve_model("gemma-3-270m")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else torch.float32).eval()
    ids = {label: tok(w, add_special_tokens=False)["input_ids"][0] for label, w in WORDS.items()}
    labels, out = list(ids), []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(rows), 32):
            enc = tok([PROMPT.format(text=r["text"]) for r in rows[i:i + 32]], return_tensors="pt", padding=True,
                      truncation=True, max_length=128)
            last = model(**enc).logits[:, -1].log_softmax(-1)
            scores = last[:, [ids[label] for label in labels]]
            out += [labels[j] for j in scores.argmax(-1).tolist()]
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=500)
    p.add_argument("--peer-rows", type=int, default=200, help="the peer is slow: fewer rows (rates compare)")
    p.add_argument("--out", default="bench/zero_shot_speed.json")
    p.add_argument("--peer-bf16", action="store_true", help="the peer once more with the model loaded in bf16")
    a = p.parse_args()
    if not DATA.is_file():
        print(f"skipped: {DATA} not found (the shared data sets live beside the project)")
        return
    import torch

    from tasktune.precision import decide_bf16

    rows = reviews(a.rows)
    ours_s, ours = tasktune_side(rows)
    peer_s, peer = peer_side(rows[:a.peer_rows])
    peer16_s = peer_side(rows[:a.peer_rows], bf16=True)[0] if a.peer_bf16 else None
    agree = sum(x == y for x, y in zip(ours, peer)) / len(peer)
    from peak import matmul_flops
    from transformers import AutoTokenizer

    from tasktune.models.loading import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("gemma-3-270m"))
    tokens = sum(min(128, len(tok(PROMPT.format(text=r["text"]))["input_ids"])) for r in rows)
    n = 18 * (2 * 640 * 1024 + 2 * 640 * 256 + 3 * 640 * 2048)  # gemma-3-270m: q, o, k, v, MLP per layer
    bf16 = decide_bf16("auto").bf16  # what tasktune's side ran in
    fp32, bf16_rate = matmul_flops(torch.float32), matmul_flops(torch.bfloat16)
    ceiling = (bf16_rate if bf16 else fp32) / (2 * n * tokens / len(rows))
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "tasktune": {"rows": len(rows), "seconds": round(ours_s, 1), "examples_per_s": round(len(rows) / ours_s, 2),
                           "accuracy": sum(x == r["label"] for x, r in zip(ours, rows)) / len(rows)},
              "peer": {"rows": len(peer), "seconds": round(peer_s, 1), "examples_per_s": round(len(peer) / peer_s, 2)},
              "same_predictions_on_peer_rows": round(agree, 4), "mean_tokens": round(tokens / len(rows), 1),
              "fp32_gflops": round(fp32 / 1e9, 1), "bf16_gflops": round(bf16_rate / 1e9, 1),
              "tasktune_precision": "bf16" if bf16 else "fp32", "examples_per_s_at_100pct_mfu": round(ceiling, 2)}
    if peer16_s:
        result["peer_bf16"] = {"rows": len(peer), "seconds": round(peer16_s, 1),
                               "examples_per_s": round(len(peer) / peer16_s, 2)}
    result["tasktune"]["mfu_pct"] = round(100 * result["tasktune"]["examples_per_s"] / ceiling, 1)
    result["ratio"] = round(result["tasktune"]["examples_per_s"] / result["peer"]["examples_per_s"], 2)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
