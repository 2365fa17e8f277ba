"""Benchmark (not a test): CMRC 2018 trial extractive QA plus generated no-answer questions.

Data: ../shared/data/cmrc2018/cmrc2018_trial.json (1,002 questions on 256 paragraphs, all
answerable), converted with `tasktune data convert --from squad`. Split by paragraph (questions
on one paragraph never straddle train and eval), seeded with --split-seed: the paragraphs are
shuffled and --eval-paragraphs of them held out. Generated negatives: each question is, with
probability --negative-share, also asked of another paragraph of the same part (an unrelated
text), with `answers: []`. Training uses a seeded sample (data.seed 0, the same for every training
seed) of --train rows of the train part, negatives included.

Models: gemma-3-270m (LoRA on attention, bf16 autocast, span head at its own learning rate) and all-minilm-l6-v2 (full fine-tuning;
its BERT vocabulary has single CJK characters). Baselines on the same eval rows: always "no
answer", and the untrained span head (the zero-shot of a new head). EM/F1 follow the official
CMRC 2018 rules (tasktune's metric_language zh); intervals are bootstrap 95% over questions
(`tasktune compare`). Training seeds vary (--seeds); the split does not.

Each run is scored twice: with the default null threshold (0) and with a threshold fitted on the
other half of the eval paragraphs (2-fold cross-fitting, the "-crossfit" rows): the honest
figure for `eval --tune-null-threshold`, which fits on the rows it scores. --reuse keeps a
finished run whose config is unchanged instead of training it again.

--variants runs the span-scorer study: causal or bidirectional attention x span head reading h_t,
[h_t ; h_(t+1)], or h_t plus a bilinear start-end term (`task.span_features`), "-prior": with a learned
span-length score (`task.span_length_prior`).

Usage:
    python bench/extractive_qa.py --models gemma-3-270m all-minilm-l6-v2 --seeds 0 1 2
    python bench/extractive_qa.py --models gemma-3-270m --seeds 0 --train 280 --runs bench_runs/qa_study \
        --out bench/qa_span_study.json --variants causal-token causal-token_next bidir-token bidir-token_next
Skips with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from subprocess_runs import runs_folder, train_subprocess, write_results

from tasktune.atomic import write_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cmrc2018" / "cmrc2018_trial.json"
COMMON = ["task.name=extractive_qa", "task.metric_language=zh", "task.max_answer_tokens=100",
          "task.doc_stride=128", "train.warmup_ratio=0.1", "train.eval_during_training=false",
          "train.logging_steps=10", "data.seed=0"]
MODELS = {
    "gemma-3-270m": ["model.name=gemma-3-270m", "model.max_length=384", "train.bf16=auto",
                     "model.lora={r: 16, alpha: 32, dropout: 0.0, target_modules: [q_proj, k_proj, v_proj, o_proj]}",
                     "train.batch_size=4", "train.effective_batch_size=8", "train.learning_rate=3e-4",
                     "train.head_learning_rate=1e-2"],
    "all-minilm-l6-v2": ["model.name=all-minilm-l6-v2", "model.max_length=384", "train.batch_size=16",
                         "train.learning_rate=1e-4"],
}
# The span-scorer study (issue 13): what each start/end score reads, under each attention.
VARIANTS = {"causal-token": [], "causal-token_next": ["task.span_features=token_next"],
            "bidir-token": ["model.attention=bidirectional"],
            "bidir-token_next": ["model.attention=bidirectional", "task.span_features=token_next"],
            "causal-bilinear": ["task.span_features=bilinear"],
            "bidir-bilinear": ["model.attention=bidirectional", "task.span_features=bilinear"],
            "causal-token-prior": ["task.span_length_prior=true"],
            "causal-bilinear-prior": ["task.span_features=bilinear", "task.span_length_prior=true"]}


def build_data(out: Path, split_seed: int, eval_paragraphs: int, negative_share: float) -> tuple[Path, Path]:
    """train.jsonl / eval.jsonl: converted CMRC rows split by paragraph, plus paired negatives."""
    from tasktune.data.convert import from_squad

    rows, counts, _ = from_squad(str(DATA))
    by_para: dict[str, list[dict]] = {}
    for r in rows:
        by_para.setdefault(r["record_id"], []).append(r)
    paras = sorted(by_para)
    rng = random.Random(split_seed)
    rng.shuffle(paras)
    parts = {"eval": paras[:eval_paragraphs], "train": paras[eval_paragraphs:]}
    paths = []
    for name, keys in parts.items():
        part = [r for k in keys for r in by_para[k]]
        contexts = {k: by_para[k][0]["context"] for k in keys}
        negatives = []
        for r in part:
            if rng.random() < negative_share:
                other = rng.choice([k for k in keys if k != r["record_id"]])
                negatives.append({**r, "id": r["id"] + "_NEG", "context": contexts[other], "answers": [],
                                  "record_id": other})
        path = out / f"{name}.jsonl"
        write_jsonl(path, part + negatives)
        print(f"{name}: {len(keys)} paragraphs, {len(part)} questions + {len(negatives)} negatives -> {path}")
        paths.append(path)
    return paths[1], paths[0]


def finished_with(folder: Path, args: list[str]) -> bool:
    """Whether `folder` is a finished, evaluated run of the config `args` give, on the same data files
    (same content by sha256, wherever the run was started from), trained by this code version (the git
    sha in its env.json): what --reuse keeps."""
    from tasktune.config import load_config
    from tasktune.fingerprint import sha256_files
    from tasktune.rundir import git_sha

    if not (folder / "eval" / "eval" / "metrics.json").is_file():
        return False
    if json.loads((folder / "env.json").read_text()).get("git_sha") != git_sha(Path(__file__).parent):
        return False
    want = load_config(None, args)
    skip = {"output_dir": True, "data": {"train", "eval"}}
    if load_config(folder / "config.yaml").model_dump(exclude=skip) != want.model_dump(exclude=skip):
        return False
    files = json.loads((folder / "data.json").read_text())["files"]
    return all(files[k]["sha256"] == sha256_files([getattr(want.data, k)]) for k in ("train", "eval"))


def train_or_reuse(out: Path, args: list[str], folder: Path, reuse: bool) -> dict:
    """train_subprocess, or with `reuse` the figures an identical finished run in `folder` logged."""
    if reuse and finished_with(folder, args):
        history = json.loads((folder / "metrics_history.json").read_text())
        end = next((h for h in history if "train_samples_per_second" in h), {})
        print(f"reusing {folder} (finished, same config)")
        return {"run": str(folder), "train_runtime_s": end.get("train_runtime"),
                "train_samples_per_s": end.get("train_samples_per_second"), "reused": True}
    return train_subprocess(out, args, folder)


def crossfit(out: Path, run_folder: Path, eval_path: Path, seed: int = 0) -> tuple[Path, dict]:
    """Predictions with a null threshold fitted on the other half of the eval paragraphs (2-fold, seeded).

    A threshold fitted on the rows it is scored on (`eval --tune-null-threshold`) flatters; this is
    the honest figure for "tuned threshold". Rows are matched to predictions by id. Written as a
    run-like folder (predictions + best/tasktune.json) for `tasktune compare`.
    """
    from tasktune.atomic import write_json
    from tasktune.tasks import qa_spans
    from tasktune.tasks.extractive_qa import ExtractiveQA

    task = ExtractiveQA()
    meta = json.loads((run_folder / "best" / "tasktune.json").read_text())
    state = meta["state"]
    preds = {p["id"]: p for p in map(json.loads, (run_folder / "eval/eval/predictions.jsonl").read_text().splitlines())}
    rows = [json.loads(x) for x in eval_path.read_text(encoding="utf-8").splitlines()]
    paras = sorted({r["record_id"] for r in rows})
    random.Random(seed).shuffle(paras)
    half = set(paras[::2])
    decided, thresholds = {}, {}
    for fold in (True, False):
        fitted, _, _ = task.tune([preds[r["id"]] for r in rows if (r["record_id"] in half) == fold], state)
        thresholds[f"fold{int(fold)}"] = fitted["null_threshold"]
        for r in rows:
            if (r["record_id"] in half) != fold:
                decided[r["id"]] = qa_spans.decide(dict(preds[r["id"]]), fitted["null_threshold"])
    decided = [decided[r["id"]] for r in rows]
    folder = out / f"{run_folder.name}-crossfit"
    write_jsonl(folder / "eval" / "eval" / "predictions.jsonl", decided)
    write_json(folder / "best" / "tasktune.json", {**meta, "crossfit_thresholds": thresholds})
    metrics = task.metrics(decided, state)
    return folder, {"thresholds": thresholds, **{k: round(metrics[k], 2) for k in ("exact", "f1", "has_answer_f1",
                                                                                  "no_answer_f1")}}


def answer_lengths(run_folder: Path) -> dict:
    """Median characters of each eval row's top-scored span (null decision aside) and of its first gold answer
    (rows with one): are predicted boundaries the size of the answers?"""
    import statistics

    preds = [json.loads(x) for x in (run_folder / "eval/eval/predictions.jsonl").read_text().splitlines()]
    top = [len(p["candidates"][0]["text"]) for p in preds if p.get("candidates")]
    gold = [len(p["gold"][0]) for p in preds if p.get("gold")]
    return {"top_answer_median_chars": statistics.median(top) if top else None,
            "gold_median_chars": statistics.median(gold) if gold else None}


def run(out: Path, model: str, seed: int, data: tuple[Path, Path], train_rows: int, epochs: float,
        reuse: bool = False, variant: str = "causal-token") -> dict:
    """One `tasktune train` in a subprocess: time, memory, speed (windows/s) and eval EM/F1."""
    folder = out / (f"{model}-seed{seed}" if variant == "causal-token" else f"{model}-{variant}-seed{seed}")
    args = [*COMMON, *MODELS[model], *VARIANTS[variant], f"data.train={data[0]}", f"data.eval={data[1]}",
            f"train.seed={seed}",
            f"data.max_train_rows={train_rows}", f"train.epochs={epochs}"]
    result = train_or_reuse(out, args, folder, reuse)
    metrics = json.loads((folder / "eval" / "eval" / "metrics.json").read_text())
    return {**result, **{k: round(metrics[k], 2) for k in ("exact", "f1", "has_answer_f1", "no_answer_f1")
                         if k in metrics}, **answer_lengths(folder)}


def untrained(out: Path, model: str, data: tuple[Path, Path], reuse: bool = False) -> Path:
    """The untrained span head of `model` (one step at lr 1e-12), scored with the baselines on the eval rows."""
    folder = out / f"untrained-{model}"
    args = [*COMMON, *MODELS[model], f"data.train={data[0]}", f"data.eval={data[1]}", "train.max_steps=1",
            "train.learning_rate=1e-12", "train.head_learning_rate=null", "data.max_train_rows=8",
            "baseline.after_training=true"]
    train_or_reuse(out, args, folder, reuse)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--train", type=int, default=560, help="training rows (questions and negatives)")
    p.add_argument("--epochs", type=float, nargs="+", default=[1.0], help="epochs per model (one value, or one per model)")
    p.add_argument("--eval-paragraphs", type=int, default=50)
    p.add_argument("--negative-share", type=float, default=0.15)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--runs", default="bench_runs/extractive_qa")
    p.add_argument("--out", default="bench/extractive_qa.json")
    p.add_argument("--variants", nargs="+", default=["causal-token"], choices=list(VARIANTS),
                   help="attention and span features (gemma-3-270m; the encoder ignores attention)")
    p.add_argument("--reuse", action="store_true", help="keep finished runs whose config is unchanged")
    p.add_argument("--no-untrained", action="store_true",
                   help="skip the untrained-head run and its baselines (no-answer, zero-shot): the table has the runs only")
    p.add_argument("--lengths-of", nargs="+", metavar="RUN", help="only print answer_lengths of finished run folders")
    a = p.parse_args()
    if a.lengths_of:
        for folder in a.lengths_of:
            print(folder, json.dumps(answer_lengths(Path(folder))))
        return
    out = runs_folder(DATA, a.runs)
    if out is None:
        return
    data = build_data(out, a.split_seed, a.eval_paragraphs, a.negative_share)
    epochs = dict(zip(a.models, a.epochs * len(a.models) if len(a.epochs) == 1 else a.epochs))
    runs = {}
    for model in a.models:
        for seed, variant in ((s, v) for s in a.seeds for v in a.variants):
            name = f"{model}-seed{seed}" if variant == "causal-token" else f"{model}-{variant}-seed{seed}"
            runs[name] = run(out, model, seed, data, a.train, epochs[model], a.reuse, variant)
            fitted, runs[name]["crossfit"] = crossfit(out, Path(runs[name]["run"]), data[1])
            runs[name]["crossfit_run"] = str(fitted)
            print(json.dumps(runs[name]), flush=True)
    baseline = [] if a.no_untrained else [str(untrained(out, a.models[0], data, a.reuse))]
    from tasktune.compare import compare

    table = compare([r["run"] for r in runs.values()] + [r["crossfit_run"] for r in runs.values()] + baseline)
    result = {"data": str(DATA), "train_rows": a.train, "epochs": epochs, "seeds": a.seeds,
              "split": f"by paragraph, seed {a.split_seed}, {a.eval_paragraphs} paragraphs held out",
              "negative_share": a.negative_share, "runs": runs,
              "note": "gemma-3-270m weights are dequantized GGUF Q4_K_M"}
    write_results(a.out, result, table["methods"], ("exact", "f1"), 2)

if __name__ == "__main__":
    main()
