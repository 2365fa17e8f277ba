"""Benchmark (not a test): C3 multiple choice with gemma-3-270m: random, zero-shot, label scoring, head, ensemble.

Data: `../shared/data/c3/` dialogues (c3-d: 2-4 options, ~120 tokens per prompt), converted with
`tasktune data convert --from c3`; a seeded sample of train rows for training, dev rows for scoring.
Runs: `examples/mc_c3.yaml` with task.method label_scoring (letters) and head, same rows and budget;
zero-shot (the same prompt, untrained) and random beside them; the label-scoring run again with 4
cyclic shifts of the options averaged; then `tasktune ensemble` of the two on the dev rows (cross-fitted). Accuracy and MAP@3 with bootstrap 95% intervals (`tasktune compare`),
train samples/s, wall time, peak RSS.

Run: python bench/multiple_choice.py [--subset d] [--train 600] [--dev 400] [--seed 0] [--shifts 4] [--reuse] [--no-ensemble]
     [--text-scoring] [--methods label_scoring head text]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from subprocess_runs import runs_folder, train_subprocess

ROOT = Path(__file__).parents[1]
C3 = ROOT.parent / "shared" / "data" / "c3"


def convert(split: str, subset: str, out: Path) -> Path:
    path = out / f"c3-{subset}-{split}.jsonl"
    subprocess.run([sys.executable, "-m", "tasktune", "data", "convert", "--from", "c3",
                    str(C3 / f"c3-{subset}-{split}.json"), str(path)], check=True, capture_output=True)
    return path


def rescored(out: Path, method: str, setting: str, reuse: bool, baseline: bool = True) -> dict:
    """`tasktune eval` of the `method` run with `--set setting` (and `--baseline`; kept with `reuse` when done):
    the compare table's methods (the run, with baseline zero_shot and random) on the dev rows."""
    from tasktune.compare import compare

    run, split = str(out / method), f"eval-{setting}"
    done = out / method / "eval" / split / ("baselines" if baseline else "predictions.jsonl")
    if not (reuse and done.exists()):
        subprocess.run([sys.executable, "-m", "tasktune", "eval", run, "--set", setting] + ["--baseline"] * baseline,
                       check=True, capture_output=True)
    return compare([run], split=split)["methods"]


def pmi_pairs(out: Path) -> dict:
    """Paired differences (bootstrap over the same dev rows) of pmi against mean scoring, zero-shot and trained,
    and of trained against zero-shot under pmi: the text run's two evaluations gathered in one run-like folder
    (`pmi_vs_mean`: predictions = the trained run scored by pmi, baselines = the other three) for `compare`."""
    import shutil

    from tasktune.compare import compare

    text, pmi = out / "text" / "eval", "eval-task.text_score=pmi"
    # The base model scored by pmi: the text_pmi run's own zero-shot (the same prompt, rows and scoring) when it ran.
    own = out / "text_pmi" / "eval" / "eval" / "baselines" / "zero_shot.jsonl"
    zero_shot_pmi = own if own.is_file() else text / pmi / "baselines" / "zero_shot.jsonl"
    folder = out / "pmi_vs_mean"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "eval" / "eval" / "baselines").mkdir(parents=True)
    (folder / "best").mkdir()
    shutil.copy(out / "text" / "best" / "tasktune.json", folder / "best" / "tasktune.json")
    shutil.copy(text / pmi / "predictions.jsonl", folder / "eval" / "eval" / "predictions.jsonl")
    for name, path in {"trained_mean": text / "eval" / "predictions.jsonl",
                       "zero_shot_mean": text / "eval" / "baselines" / "zero_shot.jsonl",
                       "zero_shot_pmi": zero_shot_pmi}.items():
        shutil.copy(path, folder / "eval" / "eval" / "baselines" / f"{name}.jsonl")
    return {f"{a} - {b}": compare([str(folder)], against=b)["differences"][a]
            for a, b in (("zero_shot_pmi", "zero_shot_mean"), ("pmi_vs_mean", "trained_mean"),
                         ("pmi_vs_mean", "zero_shot_pmi"))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subset", default="d", choices=["d", "m"], help="d: dialogues, m: mixed written texts")
    p.add_argument("--train", type=int, default=600)
    p.add_argument("--dev", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", nargs="+", default=["label_scoring", "head"],
                   choices=["label_scoring", "head", "text", "text_pmi"],
                   help="text: label scoring of the option texts, trained (task.scoring=text); text_pmi: the same "
                   "trained and scored with task.text_score=pmi")
    p.add_argument("--pmi", action="store_true", help="score the text run's dev rows again with task.text_score=pmi, "
                   "zero-shot and trained (the option's log-probability minus its log-probability after the answer "
                   "prefix alone)")
    p.add_argument("--text-scoring", action="store_true", help="also score the option texts (zero-shot and with the "
                   "label_scoring run): does a small model read the options better than their letters?")
    p.add_argument("--shifts", type=int, default=4, help="label scoring evaluated again averaging this many cyclic "
                   "shifts of the options (1: skip)")
    p.add_argument("--reuse", action="store_true", help="keep a method's finished run (best/ and its eval) as it is")
    p.add_argument("--no-ensemble", action="store_true", help="skip the ensemble (it predicts every member again)")
    p.add_argument("--runs", default="bench_runs/multiple_choice")
    p.add_argument("--out", default="bench/multiple_choice.json")
    a = p.parse_args()
    out = runs_folder(C3 / f"c3-{a.subset}-train.json", a.runs)
    if out is None:
        return
    train, dev = convert("train", a.subset, out), convert("dev", a.subset, out)
    rows = [json.loads(x) for x in dev.read_text(encoding="utf-8").splitlines()]
    import random

    sample = random.Random(a.seed).sample(rows, min(a.dev, len(rows)))
    dev_sample = out / "dev_sample.jsonl"
    dev_sample.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in sample), encoding="utf-8")
    common = [f"data.train={train}", f"data.eval={dev_sample}", f"data.max_train_rows={a.train}", "data.max_eval_rows=null",
              f"train.seed={a.seed}", "model.max_length=256"]
    result, runs = {"rows": {"train": a.train, "dev": len(sample)}}, []
    for i, method in enumerate(a.methods):
        cfg = ROOT / "examples" / "mc_c3.yaml"
        # "text": label scoring trained on the option texts (each prompt read once), with its own zero-shot beside it.
        how = {"text": ["task.method=label_scoring", "task.scoring=text"], "head": ["task.method=head"],
               "text_pmi": ["task.method=label_scoring", "task.scoring=text", "task.text_score=pmi"],
               "label_scoring": ["task.method=label_scoring", "task.scoring=letter"]}[method]
        proc_args = [*common, *how, f"baseline.after_training={str(i == 0 or method.startswith('text')).lower()}"]
        folder = out / method
        if a.reuse and (folder / "eval" / "eval" / "metrics.json").is_file():
            result[method] = {"run": str(folder), "reused": True}
        else:
            result[method] = train_subprocess(out, proc_args, folder, config=cfg)
        runs.append(str(folder))
        print(method, json.dumps(result[method]), flush=True)
    from tasktune.compare import compare

    table = {}
    for run in runs:
        name = Path(run).name  # the text runs' baselines score option texts: keep them apart from the letters'
        suffix = {"text": ", option texts", "text_pmi": ", option texts, pmi"}.get(name)
        table.update({(f"{k}{suffix}" if suffix and k != name else k): v
                      for k, v in compare([run])["methods"].items()})
    if "label_scoring" in a.methods and a.shifts > 1:  # what averaging over cyclic shifts buys (x the forwards)
        run = str(out / "label_scoring")
        subprocess.run([sys.executable, "-m", "tasktune", "eval", run, "--set", f"task.permutations={a.shifts}"],
                       check=True, capture_output=True)
        table[f"label_scoring, {a.shifts} cyclic shifts"] = compare(
            [run], split=f"eval-task.permutations={a.shifts}")["methods"]["label_scoring"]
    if "label_scoring" in a.methods and a.text_scoring:  # the option texts scored instead of their letters
        methods = rescored(out, "label_scoring", "task.scoring=text", a.reuse)
        table["zero-shot, option texts scored (mean log-prob per token)"] = methods["zero_shot"]
        table["label_scoring run (trained on letters), option texts scored"] = methods["label_scoring"]
    if "text" in a.methods and a.pmi:  # the text run and its zero-shot, scored with pmi instead of the mean
        twin = "text_pmi" in a.methods  # its zero-shot is this one: not computed twice
        methods = rescored(out, "text", "task.text_score=pmi", a.reuse, baseline=not twin)
        if not twin:
            table["zero-shot, option texts scored by pmi"] = methods["zero_shot"]
        table["text run (trained with the mean), scored by pmi"] = methods["text"]
        result["pmi_paired_differences"] = pmi_pairs(out)  # pmi_vs_mean: the text run scored by pmi
        print(json.dumps(result["pmi_paired_differences"]))
    if len(runs) > 1 and not a.no_ensemble:
        subprocess.run([sys.executable, "-m", "tasktune", "ensemble", *runs, "--data", str(dev_sample), "--out",
                        str(out / "ensemble"), "--overwrite"], check=True, capture_output=True)
        result["ensemble"] = json.loads((out / "ensemble/eval/dev_sample/metrics.json").read_text())
        for name, m in compare([str(out / "ensemble")], split="dev_sample")["methods"].items():
            table[f"{name} (cross-fitted)" if name == "ensemble" else f"{name} (dev_sample)"] = m
    result["quality"] = table
    Path(a.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    print("| method | accuracy | MAP@3 |")
    for name, m in table.items():
        print(f"| {name} | " + " | ".join(f"{m[k]['value']:.3f} [{m[k]['ci95'][0]:.3f}, {m[k]['ci95'][1]:.3f}]"
                                          for k in ("accuracy", "map@3")) + " |")


if __name__ == "__main__":
    main()
