"""The peer of `bench/compare.py --suite qa`: extractive QA with a plain `transformers.Trainer`, written the way
the library's `run_qa.py` example does it.

Every (question, context) cut into windows of --max-length tokens overlapping by --stride (the tokenizer's
overflow), every window padded to --max-length, start/end labels on the answer's tokens (the first token when
a window does not hold the answer), `AutoModelForQuestionAnswering` (a new start/end head), full fine-tuning,
fp32, AdamW with linear decay after warmup. Predictions: the best start <= end pair within --max-answer
tokens over a question's windows (n-best 20 per window), scored with tasktune's CMRC 2018 EM/F1 (zh) so both
sides use one metric.
Reads JSONL rows `{id, question, context, answers: [{text, start}]}` (`tasktune data convert --from squad`); writes JSON with the Trainer's
train samples/s, EM, F1 and each test question's F1 (for bootstrap intervals).

Run: python bench/peer_qa.py MODEL_DIR train.jsonl test.jsonl out.json [--max-length 256] [--stride 64]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer, TrainingArguments

from tasktune.metrics.qa import qa_scores


def windows(tok, rows, max_length: int, stride: int, train: bool) -> list[dict]:
    enc = tok([r["question"] for r in rows], [r["context"] for r in rows], truncation="only_second",
              max_length=max_length, stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
              padding="max_length")
    feats = []
    for i, row_index in enumerate(enc["overflow_to_sample_mapping"]):
        row, seq = rows[row_index], enc.sequence_ids(i)
        offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq)]
        f = {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]}
        if "token_type_ids" in enc:
            f["token_type_ids"] = enc["token_type_ids"][i]
        if train:
            a = row["answers"][0] if row["answers"] else {"start": -1, "text": ""}
            start_char, end_char = a["start"], a["start"] + len(a["text"])
            inside = [j for j, o in enumerate(offsets) if o is not None and o[0] < end_char and o[1] > start_char]
            f["start_positions"], f["end_positions"] = (inside[0], inside[-1]) if inside else (0, 0)
        else:
            f["row"], f["offsets"] = row_index, offsets
        feats.append(f)
    return feats


def answers(start_logits, end_logits, feats, rows, max_answer: int) -> list[str]:
    best: dict[int, tuple[float, str]] = {}
    for s_log, e_log, f in zip(start_logits, end_logits, feats):
        offsets, context = f["offsets"], rows[f["row"]]["context"]
        for s in np.argsort(s_log)[-20:]:
            for e in np.argsort(e_log)[-20:]:
                if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > max_answer:
                    continue
                score = s_log[s] + e_log[e]
                if score > best.get(f["row"], (-np.inf, ""))[0]:
                    best[f["row"]] = (score, context[offsets[s][0]:offsets[e][1]])
    return [best.get(i, (0, ""))[1] for i in range(len(rows))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("model", "train", "test", "out"):
        p.add_argument(name)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--max-answer", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    read = lambda path: [json.loads(x) for x in open(path, encoding="utf-8")]  # noqa: E731
    train_rows, test_rows = read(a.train), read(a.test)
    tok = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForQuestionAnswering.from_pretrained(a.model, dtype=torch.float32)
    args = TrainingArguments(output_dir=a.out + ".trainer", per_device_train_batch_size=a.batch_size,
                             per_device_eval_batch_size=32, learning_rate=a.learning_rate, num_train_epochs=1,
                             warmup_steps=0.1, lr_scheduler_type="linear", save_strategy="no", report_to=[],
                             logging_steps=10, seed=a.seed, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=windows(tok, train_rows, a.max_length, a.stride, True))
    train = trainer.train().metrics
    test_feats = windows(tok, test_rows, a.max_length, a.stride, False)
    plain = [{k: v for k, v in f.items() if k not in ("row", "offsets")} for f in test_feats]
    start_logits, end_logits = trainer.predict(plain).predictions
    preds = answers(start_logits, end_logits, test_feats, test_rows, a.max_answer)
    scores = [qa_scores(pr, [x["text"] for x in r["answers"]], "zh") for pr, r in zip(preds, test_rows)]
    with open(a.out, "w") as f:
        json.dump({"train_samples_per_second": train["train_samples_per_second"], "train_runtime": train["train_runtime"],
                   "train_windows": len(trainer.train_dataset), "exact": 100 * np.mean([s["exact"] for s in scores]),
                   "f1": 100 * np.mean([s["f1"] for s in scores]), "row_f1": [s["f1"] for s in scores]}, f)


if __name__ == "__main__":
    main()
