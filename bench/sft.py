"""Benchmark (not a test): SFT on AliMeeting4MUG topic titles with gemma-3-270m + LoRA, against the base model.

Data: `../shared/data/alimeeting4mug/ttg_alpaca_a.json` (500 Alpaca rows: a meeting excerpt of ~1,700
characters -> its title of ~11). Run: `examples/mug_title_lora.yaml` (model.max_length 1024, LoRA r 8
all-linear on the top 9 layers, 1 epoch, 10% held out with data.seed 0) on `--train` rows; the base
model's titles beside the tuned ones on the same `--eval` held-out rows: ROUGE-1/2/L and BLEU-4 on
characters with bootstrap 95% intervals (`tasktune compare`), train samples/s, peak RSS. For the
speed contract: LLaMA-Factory 0.9.5 measured 0.097 samples/s on this CPU class with cutoff 512 (the
issue author's figure, not measured in this run).

Run: python bench/sft.py [--train 64] [--eval 40] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from subprocess_runs import runs_folder, train_subprocess, write_results

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data" / "alimeeting4mug" / "ttg_alpaca_a.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=64)
    p.add_argument("--eval", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="bench_runs/sft")
    p.add_argument("--out", default="bench/sft.json")
    a = p.parse_args()
    out = runs_folder(DATA, a.runs)
    if out is None:
        return
    folder = out / f"mug_title_s{a.seed}"
    args = [f"data.train={DATA}", f"data.max_train_rows={a.train}", f"data.max_eval_rows={a.eval}", "data.seed=0",
            f"train.seed={a.seed}"]
    run = train_subprocess(out, args, folder, config=ROOT / "examples" / "mug_title_lora.yaml")
    print("run", run, flush=True)
    from tasktune.compare import compare

    import torch

    table = compare([str(folder)])["methods"]
    print("| method | rouge-1 | rouge-2 | rouge-l | bleu-4 |")
    write_results(a.out, {"rows": {"train": a.train, "eval": a.eval}, "run": run,
                          "cpu": torch.backends.cpu.get_cpu_capability()}, table,
                  ("rouge-1", "rouge-2", "rouge-l", "bleu-4"), 2)


if __name__ == "__main__":
    main()
