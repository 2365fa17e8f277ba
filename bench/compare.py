"""Benchmark (not a test): tasktune against a plain transformers.Trainer peer, side by side in one run.

Suite `classification` (issue 14 part 2): ChnSentiCorp hotel reviews (`../shared/data/chnsenticorp/`),
--train / --test rows of a seeded shuffle (seed 42, empty reviews dropped), gemma-3-270m, LoRA r 8 /
alpha 16 / dropout 0.05 on every linear layer of every layer, batch 8, lr 2e-4, warmup 0.1, 1 epoch,
sequences cut at 128 tokens, fp32 or bf16 as `train.bf16: auto` decides (the peer: fp32, as the
official example runs on a CPU). Runs, interleaved, --repeats times (same seed: the repeats measure
speed noise, the accuracy is the same):
- peer: `bench/peer_classification.py` (pad every row to 128, new SEQ_CLS head, LoRA);
- peer-bf16 (on request, --peer-bf16): the same script with `TrainingArguments(bf16=True)`, what a peer user with
  bf16 units would pass; the ratios stay against the fp32 peer, as the issue defines it;
- tasktune-head: `tasktune train` with `task.method: head` (dynamic padding per batch);
- tasktune-label: `task.method: label_scoring`, the quickstart's prompt and packing (no new head: the LM
  scores 正面 / 负 after the prompt, logits at one position per row);
- TOOL-fp32 (on request, --tools): any of the three in fp32 (`train.bf16=false`) on a CPU where `auto` picks bf16;
- tasktune-head-rebalance (on request, --tools): the head with `train.sampling: batch_rebalance`, batch 4 x 2
  accumulation = the same 8 random rows per step, sorted by length into two forward passes.
Figures per run: train samples/s (each Trainer's own figure), tokens/s (the rows' real tokens, the same
count for every tool, so the ratio is the samples/s ratio), peak RSS, accuracy with a bootstrap 95%
interval, and model FLOPs utilisation: 4 x (non-embedding parameters) FLOPs per real token (LoRA: the
forward and the backward to the activations; frozen weights get no gradient), plus the LM head where
label scoring computes it, over this machine's fp32 (or bf16) matmul peak from `bench/peak.py`.

Suite `qa`: CMRC 2018 trial (`../shared/data/cmrc2018/`), paragraphs shuffled (seed 42) and split so no
paragraph straddles train and test, --train / --test questions (all answerable), all-minilm-l6-v2 (gemma has
no question-answering class in transformers for the peer to load), full fine-tuning, windows of 256 tokens
with stride 64, answers up to 100 tokens, batch 16, lr 1e-4, warmup 0.1, 1 epoch, fp32 or bf16 as above.
- peer: `bench/peer_qa.py` (the `run_qa.py` way: every window padded to 256, AutoModelForQuestionAnswering);
- tasktune-qa: `tasktune train` with `task.name: extractive_qa` (windows padded per batch; the span head with
  its learned "no answer" score, which `task.null_threshold: -1000` keeps from ever winning: every test
  question has an answer and the peer, like `run_qa.py` without `--version_2_with_negative`, never abstains).
Speed is questions/s (training questions over the training loop's runtime: both sides cut the same windows);
quality EM and F1 by the CMRC 2018 rules, with a bootstrap interval on F1. No MFU (an encoder's FLOPs per
padded window are what both pay).

Run: python bench/compare.py --suite classification [--train 200] [--test 200] [--repeats 3] [--tools ...] [--no-peer] [--peer-bf16]
     python bench/compare.py --suite qa --train 150 --test 100 --out bench/compare_qa.json
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import sys
from pathlib import Path

from peak import peak
from subprocess_runs import history_value, measured, runs_folder

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data" / "chnsenticorp" / "ChnSentiCorp_htl_all.csv"
MAX_LEN = 128
TASKTUNE = ["task.name=classification", "task.labels=['0', '1']", "model.name=gemma-3-270m",
            f"model.max_length={MAX_LEN}", "model.lora={r: 8, alpha: 16, dropout: 0.05, target_modules: all-linear}",
            "train.epochs=1", "train.batch_size=8", "train.learning_rate=2.0e-4", "train.warmup_ratio=0.1",
            "train.bf16=auto", "train.eval_during_training=false", "baseline.after_training=false", "train.seed=0"]
TOOLS = {
    "tasktune-head": ["task.method=head"],
    "tasktune-label": ["task.method=label_scoring", "train.packing=true", 'task.prompt="评论：{text}\\n情感（正面或负面）："',
                       "task.verbalizer={'1': 正面, '0': 负}"],
    # the same 8 random rows per step, sorted by length into 2 forward passes (train.sampling)
    "tasktune-head-rebalance": ["task.method=head", "train.batch_size=4", "train.effective_batch_size=8",
                                "train.sampling=batch_rebalance"],
}
# The same in fp32 whatever the CPU (train.bf16=false; a later override wins): what bf16 costs in accuracy, one machine.
TOOLS.update({f"{name}-fp32": [*overrides, "train.bf16=false"] for name, overrides in list(TOOLS.items())})


def split(out: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    with open(DATA, encoding="utf-8") as f:
        rows = [{"text": r["review"], "label": int(r["label"])} for r in csv.DictReader(f) if (r["review"] or "").strip()]
    random.Random(42).shuffle(rows)
    paths = out / "train.jsonl", out / "test.jsonl"
    for path, part in zip(paths, (rows[:n_train], rows[n_train:n_train + n_test])):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths


def model_facts(train: Path) -> dict:
    """Real tokens per training row (cut at MAX_LEN), non-embedding parameters, hidden and vocabulary size."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tasktune.models.loading import resolve_model

    path = resolve_model("gemma-3-270m")
    tok, config = AutoTokenizer.from_pretrained(path), AutoConfig.from_pretrained(path)
    texts = [json.loads(x)["text"] for x in train.read_text(encoding="utf-8").splitlines()]
    lengths = [min(MAX_LEN, len(ids)) for ids in tok(texts)["input_ids"]]
    model = AutoModelForCausalLM.from_pretrained(path)
    embed = model.get_input_embeddings().weight.numel()
    return {"tokens_per_row": statistics.mean(lengths), "non_embedding_params": model.num_parameters() - embed,
            "hidden": config.hidden_size, "vocab": config.vocab_size}


def run_peer(out: Path, files: tuple[Path, Path], repeat: int, bf16: bool = False) -> dict:
    from tasktune.metrics.bootstrap import bootstrap_ci
    from tasktune.models.loading import resolve_model

    result_path = out / f"peer{'-bf16' if bf16 else ''}-r{repeat}.json"
    m = measured([sys.executable, str(ROOT / "bench" / "peer_classification.py"), resolve_model("gemma-3-270m"),
                  str(files[0]), str(files[1]), str(result_path), "--max-length", str(MAX_LEN), *(["--bf16"] * bf16)])
    r = json.loads(result_path.read_text())
    c = r["correct"]
    return {"samples_per_s": r["train_samples_per_second"], "accuracy": r["accuracy"],
            "ci95": bootstrap_ci(c, lambda idx: sum(c[i] for i in idx) / len(idx)), "peak_rss_gib": m["peak_rss_gib"],
            "wall_s": m["seconds"]}


def run_tasktune(out: Path, files: tuple[Path, Path], tool: str, repeat: int, seed: int = 0) -> dict:
    from tasktune.compare import compare

    folder = out / f"{tool}-r{repeat}"
    m = measured([sys.executable, "-m", "tasktune", "train", str(out / "empty.yaml"), *TASKTUNE, *TOOLS[tool],
                  f"train.seed={seed}",
                  f"data.train={files[0]}", f"data.eval={files[1]}", f"output_dir={folder}", "--overwrite"])
    speed = history_value(folder, "train_samples_per_second")
    acc = compare([str(folder)])["methods"][folder.name]["accuracy"]
    precision = json.loads((folder / "env.json").read_text()).get("precision", {})
    return {"samples_per_s": speed, "accuracy": acc["value"], "ci95": acc["ci95"], "peak_rss_gib": m["peak_rss_gib"],
            "wall_s": m["seconds"], "precision": precision}


def mfu(samples_per_s: float, facts: dict, machine: dict, label_scoring: bool, bf16: bool) -> float:
    """Model FLOPs utilisation: useful FLOP/s over the matmul peak (see the module docstring)."""
    per_row = 4 * facts["non_embedding_params"] * facts["tokens_per_row"]
    if label_scoring:  # the LM head at one position per row, forward and backward to its input
        per_row += 4 * facts["hidden"] * facts["vocab"]
    peak_flops = machine["bfloat16_gflops" if bf16 else "float32_gflops"] * 1e9
    return samples_per_s * per_row / peak_flops


QA_DATA = ROOT.parent / "shared" / "data" / "cmrc2018" / "cmrc2018_trial.json"
QA_TASKTUNE = ["task.name=extractive_qa", "model.name=all-minilm-l6-v2", "model.max_length=256", "task.doc_stride=64",
               "task.max_answer_tokens=100", "task.metric_language=zh", "task.fit_threshold_after_training=false",
               "task.null_threshold=-1000",
               "train.epochs=1", "train.batch_size=16", "train.learning_rate=1e-4", "train.warmup_ratio=0.1",
               "train.bf16=auto", "train.eval_during_training=false", "baseline.after_training=false", "train.seed=0"]


def qa_split(out: Path, n_train: int, n_test: int) -> tuple[Path, Path]:
    """train.jsonl / test.jsonl of CMRC questions, split by paragraph."""
    from tasktune.data.convert import from_squad

    rows = from_squad(str(QA_DATA))[0]
    paragraphs = sorted({r["record_id"] for r in rows})
    random.Random(42).shuffle(paragraphs)
    order = {p: i for i, p in enumerate(paragraphs)}
    rows.sort(key=lambda r: order[r["record_id"]])
    train = rows[:n_train]
    boundary = {r["record_id"] for r in train}
    test = [r for r in rows[n_train:] if r["record_id"] not in boundary][:n_test]
    paths = out / "qa_train.jsonl", out / "qa_test.jsonl"
    for path, part in zip(paths, (train, test)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in part), encoding="utf-8")
    return paths


def run_qa_peer(out: Path, files: tuple[Path, Path], repeat: int, n_train: int) -> dict:
    from tasktune.metrics.bootstrap import bootstrap_ci
    from tasktune.models.loading import resolve_model

    result_path = out / f"qa-peer-r{repeat}.json"
    m = measured([sys.executable, str(ROOT / "bench" / "peer_qa.py"), resolve_model("all-minilm-l6-v2"),
                  str(files[0]), str(files[1]), str(result_path)])
    r = json.loads(result_path.read_text())
    f1 = r["row_f1"]
    return {"questions_per_s": n_train / r["train_runtime"], "exact": r["exact"], "f1": r["f1"],
            "f1_ci95": [100 * x for x in bootstrap_ci(f1, lambda idx: sum(f1[i] for i in idx) / len(idx))],
            "peak_rss_gib": m["peak_rss_gib"], "wall_s": m["seconds"]}


def run_qa_tasktune(out: Path, files: tuple[Path, Path], repeat: int, n_train: int) -> dict:
    from tasktune.compare import compare

    folder = out / f"qa-tasktune-r{repeat}"
    m = measured([sys.executable, "-m", "tasktune", "train", str(out / "empty.yaml"), *QA_TASKTUNE,
                  f"data.train={files[0]}", f"data.eval={files[1]}", f"output_dir={folder}", "--overwrite"])
    metrics = compare([str(folder)])["methods"][folder.name]
    return {"questions_per_s": n_train / history_value(folder, "train_runtime"), "exact": metrics["exact"]["value"],
            "f1": metrics["f1"]["value"], "f1_ci95": metrics["f1"]["ci95"], "peak_rss_gib": m["peak_rss_gib"],
            "wall_s": m["seconds"]}


def speed_summary(runs: dict[str, list[dict]], tool: str, key: str) -> tuple[float, dict]:
    """(median of `tool`'s repeats, {min, max, ratio to the peer's median}); without a peer (--no-peer), the ratio
    is to the first tool's median."""
    speeds = [r[key] for r in runs[tool]]
    med = statistics.median(speeds)
    base = runs["peer"] if "peer" in runs else next(iter(runs.values()))
    return med, {"min": min(speeds), "max": max(speeds), "ratio": med / statistics.median(r[key] for r in base)}


def _runs(data: Path, runs: str) -> Path | None:
    """The suite's runs folder (absolute, with the empty config every `tasktune train` here starts from), or
    None when the shared data is absent."""
    out = runs_folder(data, runs)
    if out is None:
        return None
    out = out.resolve()
    (out / "empty.yaml").write_text("{}\n")
    return out


def qa_suite(a) -> None:
    out = _runs(QA_DATA, a.runs)
    if out is None:
        return
    files = qa_split(out, a.train, a.test)
    runs: dict[str, list[dict]] = {"peer": [], "tasktune-qa": []}
    for repeat in range(a.repeats):  # interleaved, as in the classification suite
        runs["peer"].append(run_qa_peer(out, files, repeat, a.train))
        runs["tasktune-qa"].append(run_qa_tasktune(out, files, repeat, a.train))
        print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    table = {}
    print("| tool | questions/s (median, min-max) | x peer | peak RSS GiB | EM | F1 [95% CI] |")
    for tool, rs in runs.items():
        med, speed = speed_summary(runs, tool, "questions_per_s")
        table[tool] = {"questions_per_s": med, **speed, "peak_rss_gib": max(r["peak_rss_gib"] for r in rs), "exact": rs[0]["exact"],
                       "f1": rs[0]["f1"], "f1_ci95": rs[0]["f1_ci95"]}
        t = table[tool]
        print(f"| {tool} | {med:.3f} ({t['min']:.3f}-{t['max']:.3f}) | {t['ratio']:.2f}x | {t['peak_rss_gib']:.2f} | "
              f"{t['exact']:.1f} | {t['f1']:.1f} [{t['f1_ci95'][0]:.1f}, {t['f1_ci95'][1]:.1f}] |")
    Path(a.out).write_text(json.dumps({"suite": "qa", "rows": {"train": a.train, "test": a.test}, "runs": runs,
                                       "table": table}, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["classification", "qa"], default="classification")
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--test", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--tools", nargs="+", default=["tasktune-head", "tasktune-label"], choices=list(TOOLS),
                   help="classification: the tasktune variants run beside the peer")
    p.add_argument("--no-peer", action="store_true", help="classification: tasktune variants only (ratios between them)")
    p.add_argument("--seed", type=int, default=0, help="classification: tasktune's train.seed (accuracy across seeds)")
    p.add_argument("--peer-bf16", action="store_true",
                   help="classification: the peer once more with TrainingArguments(bf16=True) (CPUs with bf16 units)")
    p.add_argument("--runs", default="bench_runs/compare")
    p.add_argument("--out", default="bench/compare_classification.json")
    a = p.parse_args()
    if a.suite == "qa":
        return qa_suite(a)
    out = _runs(DATA, a.runs)
    if out is None:
        return
    files = split(out, a.train, a.test)
    machine, facts = peak(), model_facts(files[0])
    print(json.dumps({"machine": machine, "model": facts}), flush=True)
    runs: dict[str, list[dict]] = {**({} if a.no_peer else {"peer": []}), **({"peer-bf16": []} if a.peer_bf16 else {}),
                                   **{t: [] for t in a.tools}}
    for repeat in range(a.repeats):  # interleaved: a slow spell of the machine hits every tool alike
        if not a.no_peer:
            runs["peer"].append(run_peer(out, files, repeat))
        if a.peer_bf16:
            runs["peer-bf16"].append(run_peer(out, files, repeat, bf16=True))
        for tool in a.tools:
            runs[tool].append(run_tasktune(out, files, tool, repeat, a.seed))
        print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
        Path(a.out).write_text(json.dumps({"machine": machine, "model": facts, "runs": runs}, indent=2) + "\n")
    table = {}
    print("| tool | samples/s (median, min-max) | tokens/s | x peer | MFU | peak RSS GiB | accuracy [95% CI] |")
    for tool, rs in runs.items():
        med, speed = speed_summary(runs, tool, "samples_per_s")
        bf16 = tool == "peer-bf16" or any(r.get("precision", {}).get("bf16") for r in rs)
        table[tool] = {"samples_per_s": med, **speed, "tokens_per_s": med * facts["tokens_per_row"],
                       "mfu": mfu(med, facts, machine, tool.startswith("tasktune-label"), bf16),
                       "peak_rss_gib": max(r["peak_rss_gib"] for r in rs), "accuracy": rs[0]["accuracy"],
                       "ci95": rs[0]["ci95"]}
        t = table[tool]
        print(f"| {tool} | {med:.3f} ({t['min']:.3f}-{t['max']:.3f}) | {t['tokens_per_s']:.0f} | {t['ratio']:.2f}x | "
              f"{100 * t['mfu']:.1f}% | {t['peak_rss_gib']:.2f} | {t['accuracy']:.3f} [{t['ci95'][0]:.3f}, "
              f"{t['ci95'][1]:.3f}] |")
    Path(a.out).write_text(json.dumps({"suite": a.suite, "rows": {"train": a.train, "test": a.test},
                                       "machine": machine, "model": facts, "runs": runs, "table": table},
                                      indent=2) + "\n")


if __name__ == "__main__":
    main()
