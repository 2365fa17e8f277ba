"""Benchmark (not a test): multiple choice by option texts, each prompt encoded once (tasktune) against one
sequence per (prompt, option) (the plain way, transformers' multiple-choice examples), in one run.

Rows: C3 dialogues (`../shared/data/c3/c3-d-dev.json`, skipped with a message when absent), converted with the
task's own reader, prompts built by `task.prepare` (max length 256, as bench/multiple_choice.py), gemma-3-270m in
fp32 on CPU. Both sides get the SAME collated batches (`OptionCollator`): tasktune's
`label_scoring.shared_prefix_logprobs` against `label_scoring.separate_sequence_logprobs` (the same tensors as
one sequence per option, which is what transformers' examples compute). Two measurements, each interleaved
(A, B, A, B, ...) over `--repeats` repeats so machine noise hits both sides alike:
- inference: option log-probabilities of `--rows` rows under no_grad (zero-shot scoring);
- training: forward + backward of the task's loss with LoRA r 8 on all linear layers (a training step without
  the optimizer, the same for both) over the first `--train-rows` rows (one sequence per option trains at
  ~125 tokens/s on 2 cores: 48 rows x 3 repeats would take ~20 minutes).
Reported: rows/s of each, the ratio, and the largest difference between the two sides' scores.

Run: python bench/mc_text_speed.py [--rows 48] [--train-rows 16] [--batch 8] [--repeats 3] [--out bench/mc_text_speed.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
C3 = Path(__file__).parents[2] / "shared" / "data" / "c3" / "c3-d-dev.json"


def batches(n: int, batch: int):
    """(model, task, cfg, collated batches) for the first n C3 dev questions with text scoring."""
    from tasktune.config import load_config
    from tasktune.data.mc_convert import from_c3
    from tasktune.models.loading import resolve_model
    from tasktune.tasks.multiple_choice import MultipleChoice

    cfg = load_config(None, ["task=multiple_choice", "model.name=gemma-3-270m", "model.max_length=256",
                             "task.scoring=text", "task.text_score=mean"])
    task = MultipleChoice()
    rows = [task.parse_row(r, cfg, None, True) for r in from_c3(str(C3))[0][:n]]
    model, tok = task.build_model(resolve_model("gemma-3-270m"), cfg, {}, for_training=False)
    feats = task.prepare(rows, tok, cfg, {})
    collate = task.collator(tok, cfg, {})
    return model, task, cfg, [collate(feats[i:i + batch]) for i in range(0, len(feats), batch)]


def timed(fn, data) -> tuple[float, list]:
    start = time.perf_counter()
    out = [fn(b) for b in data]
    return time.perf_counter() - start, out


def report(result: dict, part: str, runs: dict, rows: int, sides: dict) -> None:
    """Rows/s of each side's best repeat and the speed-up of the prompt read once, into `result` and printed."""
    best = {k: min(v) for k, v in runs.items()}
    result[part] = {k: {"rows_per_s": round(rows / s, 3), "seconds": [round(x, 2) for x in runs[k]]}
                    for k, s in best.items()}
    tt, peer = (best[k] for k in sides)
    result[part]["speedup"] = round(peer / tt, 2)
    print(part, json.dumps(result[part]), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=48)
    p.add_argument("--train-rows", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="bench/mc_text_speed.json")
    a = p.parse_args()
    if not C3.is_file():
        print(f"skipped: {C3} not found (the shared data folder is not beside the project)")
        return
    import torch
    from peft import LoraConfig, get_peft_model

    from tasktune.tasks import label_scoring as ls

    model, task, cfg, data = batches(a.rows, a.batch)
    sides = {"tasktune (prompt once)": ls.shared_prefix_logprobs, "one sequence per option": ls.separate_sequence_logprobs}
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "rows": a.rows, "batch": a.batch,
              "prompt_tokens_mean": round(float(sum(b["attention_mask"].sum() for b in data)) / a.rows, 1),
              "options": int(sum(len(b["cont_ids"]) for b in data))}
    seconds = {"inference": {k: [] for k in sides}, "training": {k: [] for k in sides}}
    model.eval()
    with torch.no_grad():
        scores = {k: torch.cat(timed(lambda b, f=f: f(model, b, "mean"), data[:1])[1]) for k, f in sides.items()}
        for _ in range(a.repeats):
            for k, f in sides.items():
                seconds["inference"][k].append(timed(lambda b, f=f: f(model, b, "mean"), data)[0])
    report(result, "inference", seconds["inference"], a.rows, sides)
    result["max_score_difference"] = float((scores[list(sides)[0]] - scores[list(sides)[1]]).abs().max())
    lora = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear")).train()

    def step(b, f):
        loss = torch.nn.functional.cross_entropy(_scores(f, lora, b), b["labels"], reduction="sum")
        loss.backward()
        lora.zero_grad(set_to_none=True)

    def _scores(f, m, b):
        out = torch.full(b["option_mask"].shape, float("-inf"))
        out[b["row_of"], b["option_of"]] = f(m, b, "mean")
        return out

    train = data[:max(1, a.train_rows // a.batch)]
    for _ in range(a.repeats):
        for k, f in sides.items():
            seconds["training"][k].append(timed(lambda b, f=f: step(b, f), train)[0])
    report(result, "training", seconds["training"], len(train) * a.batch, sides)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
