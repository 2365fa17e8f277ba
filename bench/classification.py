"""Benchmark (not a test): ChnSentiCorp sentiment with gemma-3-270m, every method on one split.

Methods: majority class, zero-shot and calibrated zero-shot label scoring, label_scoring + LoRA,
head + LoRA, and on request tasktune's pooled head (bidirectional + mean + standardised; causal last
token standardised); the same train/eval rows and budget for each; accuracy and macro-F1 with bootstrap
95% intervals (`tasktune compare`), train samples/s, peak RSS and wall time per run.

Split: ../shared/data/chnsenticorp/ChnSentiCorp_htl_all.csv (7,766 rows; one empty review dropped),
10% held out stratified with seed 42, then seeded stratified samples of --train / --eval rows.
Training seeds vary (--seeds); the split does not.

Usage:
    python bench/classification.py --seeds 0 1 2 --train 1000 --eval 500 --out bench/classification.json
    python bench/classification.py --seeds 0 --train 500 --eval 500 --methods label_scoring head head-bidir-mean \
        head-causal-last-std head-causal-last-std-hlr --out bench/classification_pooled.json [--reuse]  # pooled head
Skips with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from subprocess_runs import runs_folder, train_subprocess, write_results

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"
COMMON = [
    "task.name=classification", "task.labels=['0', '1']", "data.columns={text: review}",
    "data.skip_invalid_rows=true", "data.eval=0.1", "model.name=gemma-3-270m", "model.max_length=128",
    'task.prompt="评论：{text}\\n情感（正面或负面）："', "data.seed=42", "task.verbalizer={'1': 正面, '0': 负}",
    "model.lora={r: 8, alpha: 16, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj]}",
    "train.epochs=1", "train.batch_size=2", "train.effective_batch_size=8", "train.learning_rate=2.0e-4",
    "train.warmup_ratio=0.1", "train.bf16=auto", "train.eval_during_training=false",
]
METHODS = {"label_scoring": ["task.method=label_scoring"], "head": ["task.method=head"],
           # tasktune's pooled head (issue 13): every token sees the whole review, the head reads their mean,
           # standardised per dimension; and the causal last token standardised, to tell the two changes apart.
           "head-bidir-mean": ["task.method=head", "model.attention=bidirectional", "task.pooling=mean",
                               "task.standardize=true"],
           "head-causal-last-std": ["task.method=head", "task.pooling=last", "task.standardize=true"],
           # the zero-initialised head at its own rate (the README's advice for new heads)
           "head-causal-last-std-hlr": ["task.method=head", "task.pooling=last", "task.standardize=true",
                                        "train.head_learning_rate=1e-2"]}


def train_run(out: Path, method: str, seed: int, rows: tuple[int, int], baselines: bool) -> dict:
    """One `tasktune train` in a subprocess; returns wall time, peak RSS and train samples/s."""
    args = [*COMMON, *METHODS[method], f"data.train={DATA}", f"data.max_train_rows={rows[0]}",
            f"data.max_eval_rows={rows[1]}", f"train.seed={seed}", f"baseline.after_training={str(baselines).lower()}"]
    return train_subprocess(out, args, out / f"{method}-seed{seed}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--eval", type=int, default=500)
    p.add_argument("--methods", nargs="+", default=["label_scoring", "head"], choices=list(METHODS))
    p.add_argument("--no-baselines", action="store_true", help="do not score the baselines (already scored)")
    p.add_argument("--reuse", action="store_true", help="keep a finished run (one with eval/eval/metrics.json)")
    p.add_argument("--runs", default="bench_runs/classification")
    p.add_argument("--out", default="bench/classification.json")
    a = p.parse_args()
    out = runs_folder(DATA, a.runs)
    if out is None:
        return
    runs = {}
    for seed in a.seeds:
        for i, method in enumerate(a.methods):
            # The baselines do not depend on training: score them once.
            first = seed == a.seeds[0] and i == 0 and not a.no_baselines
            folder = out / f"{method}-seed{seed}"
            if a.reuse and (folder / "eval/eval/metrics.json").is_file():
                runs[folder.name] = {"run": str(folder), "reused": True}
            else:
                runs[folder.name] = train_run(out, method, seed, (a.train, a.eval), baselines=first)
            print(json.dumps(runs[f"{method}-seed{seed}"]), flush=True)
    from tasktune.compare import compare

    table = compare([r["run"] for r in runs.values()])
    result = {"data": str(DATA), "train_rows": a.train, "eval_rows": a.eval, "seeds": a.seeds, "runs": runs,
              "note": "gemma-3-270m weights are dequantized GGUF Q4_K_M"}
    write_results(a.out, result, table["methods"], ("accuracy", "macro_f1"), 4)

if __name__ == "__main__":
    main()
