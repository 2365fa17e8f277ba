"""Benchmark (not a test): the quickstart recipe against its variants, speed and accuracy on one machine.

Runs `tasktune train examples/sentiment_zh.yaml` with each variant's overrides in a subprocess (same
rows, seed, model; fp32 or bf16 as `train.bf16: auto` decides here). With --steps N only the first N
optimizer steps are timed (train samples/s, no baselines); without it each variant trains the full
epoch and is scored on the 500 held-out reviews with the zero-shot and majority baselines.

Variants:
- before: batch 2 x 4 accumulation, padded, LoRA on q/k/v/o of all 18 layers (the earlier recipe);
- top6-attention: the same, LoRA on q/k/v/o of layers 12-17 only;
- packed: the earlier LoRA, the 8 reviews of a step packed into one sequence (train.packing);
- packed-top6-attention: packed, LoRA on q/k/v/o of layers 12-17 only;
- packed-top12: packed, LoRA on every linear layer of the top 12 layers;
- now: packed, LoRA on every linear layer of the top 9 layers (examples/sentiment_zh.yaml as it is);
- now-max96: now, reviews cut at 96 tokens instead of 128.

Run: python bench/quickstart_speed.py --steps 12          # speed of each variant (~1 min each on 2 cores)
     python bench/quickstart_speed.py --variants before now   # full runs with accuracy (~8-15 min each)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

CONFIG = Path(__file__).parents[1] / "examples" / "sentiment_zh.yaml"
ATTENTION = "[q_proj, k_proj, v_proj, o_proj]"
BEFORE = ["train.packing=false", "train.batch_size=2", "train.effective_batch_size=8",
          f"model.lora.target_modules={ATTENTION}", "model.lora.layers=null"]
VARIANTS = {
    "before": BEFORE,
    "top6-attention": BEFORE[:-1] + ["model.lora.layers=6"],
    "packed": [f"model.lora.target_modules={ATTENTION}", "model.lora.layers=null"],
    "packed-top6-attention": [f"model.lora.target_modules={ATTENTION}", "model.lora.layers=6"],
    "packed-top12": ["model.lora.layers=12"],
    "now": [],
    "now-max96": ["model.max_length=96"],
}


def run(name: str, out: Path, steps: int | None) -> dict:
    folder = out / name
    extra = [f"train.max_steps={steps}", "baseline.after_training=false", "data.max_eval_rows=16",
             "train.logging_steps=4"] if steps else []
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "tasktune", "train", str(CONFIG), *VARIANTS[name], *extra,
                           f"output_dir={folder}", "--overwrite"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    history = json.loads((folder / "metrics_history.json").read_text())
    end = next(h for h in history if "train_runtime" in h)
    result = {"wall_s": round(time.time() - start, 1), "train_runtime_s": round(end["train_runtime"], 1),
              "train_samples_per_s": round(end["train_samples_per_second"], 3),
              "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}
    if not steps:
        comparison = json.loads((folder / "eval/eval/baseline_comparison.json").read_text())["methods"]
        result.update({k: {"accuracy": m["accuracy"], "macro_f1": round(m["macro_f1"], 4)}
                       for k, m in comparison.items()})
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--steps", type=int, help="time only the first N optimizer steps of each variant")
    p.add_argument("--runs", default="bench_runs/quickstart")
    p.add_argument("--out", default="bench/quickstart_speed.json")
    a = p.parse_args()
    import torch

    from tasktune.precision import decide_bf16

    out = Path(a.runs)
    out.mkdir(parents=True, exist_ok=True)
    results = {"cpu": torch.backends.cpu.get_cpu_capability(), "precision": decide_bf16("auto").as_dict(),
               "steps": a.steps, "variants": {}}
    for name in a.variants:
        results["variants"][name] = run(name, out, a.steps)
        print(name, json.dumps(results["variants"][name]), flush=True)
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
