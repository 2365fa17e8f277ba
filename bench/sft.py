"""Benchmark (not a test): SFT on AliMeeting4MUG topic titles with gemma-3-270m + LoRA, against the base
model (quality) and against LLaMA-Factory 0.9.5 (speed and eval loss, same rows and LoRA, same run).

Data: `../shared/data/alimeeting4mug/ttg_alpaca_a.json` (500 Alpaca rows: a meeting excerpt of ~1,700
characters -> its title of ~11). Split here, seeded (--split-seed): the first --eval rows of a shuffle are
held out, the next --train rows train; both written to the runs folder so every run (and the peer) reads
the same files.

Parts (--parts, default all):
- quality: `examples/mug_title_lora.yaml` as it is (max_length 512, LoRA r 8 all-linear on the top 9
  layers, lr 5e-4, 1 epoch) on the train rows; the base model's titles beside the tuned ones on the held-out rows
  (`baseline.after_training`): ROUGE-1/2/L, BLEU-4 and exact match on characters with bootstrap 95%
  intervals (`tasktune compare`), the run's train samples/s and eval loss.
- speed: the same LoRA on ALL layers at cutoff 512 (the peer's setting), --speed-rows rows, with and
  without `train.packing`; and the LM-head trimming measured directly: one forward+backward of a 2-row
  512-token batch with logits at every position (what a plain causal-LM loss computes) against logits at
  the response positions only (`models/lm_head.logits_at`, what tasktune trains with), interleaved.
- peer: LLaMA-Factory 0.9.5 in its own virtualenv (--peer-venv; `pip install torch==2.13.0
  llamafactory==0.9.5` there, then `pip install torch==2.13.0` again: llamafactory pulls a newer torch; then
  `pip uninstall torchvision torchaudio`: the versions it pulls need that newer torch and break `import
  transformers`; its torchaudio import is stubbed, see `stub_torchaudio`) and tasktune on the same --peer-rows train rows, --peer-eval held-out
  rows, cutoff 512, LoRA r 8 / alpha 16 / dropout 0.05 on all linear layers of all layers, batch 2 x 4
  accumulation, lr 2e-4, warmup 0.1, 1 epoch, fp32, eval batch 1: train samples/s (each trainer's own
  figure; tasktune's also without its in-training evaluation), wall time, peak RSS and final eval loss
  (token mean per row, mean over rows, on both sides); tasktune padded and packed.

Run: python bench/sft.py [--parts quality speed peer] [--train 200] [--eval 40]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from subprocess_runs import history_value, measured, print_table, runs_folder, train_subprocess

ROOT = Path(__file__).parents[1]
DATA = ROOT.parent / "shared" / "data" / "alimeeting4mug" / "ttg_alpaca_a.json"
CONFIG = ROOT / "examples" / "mug_title_lora.yaml"
PEER_LORA = ["model.max_length=512", "model.lora={r: 8, alpha: 16, dropout: 0.05, target_modules: all-linear}",
             "train.batch_size=2", "train.effective_batch_size=8", "train.learning_rate=2.0e-4",
             "baseline.after_training=false"]


def split(out: Path, n_eval: int, n_train: int, seed: int) -> tuple[Path, Path]:
    """Held-out and train files: the first `n_eval` rows of a seeded shuffle, then the next `n_train`."""
    rows = json.loads(DATA.read_text())
    random.Random(seed).shuffle(rows)
    paths = out / "eval.json", out / "train.json"
    for path, part in zip(paths, (rows[:n_eval], rows[n_eval:n_eval + n_train])):
        path.write_text(json.dumps(part, ensure_ascii=False))
    return paths


def quality(out: Path, files: tuple[Path, Path], a) -> dict:
    folder = out / ("-".join([f"mug_title_s{a.seed}", *a.set]).replace("/", "_"))
    args = [f"data.train={files[1]}", f"data.eval={files[0]}", "data.max_train_rows=null", "data.max_eval_rows=null",
            f"train.seed={a.seed}", *a.set]
    run = train_subprocess(out, args, folder, config=CONFIG)
    print("quality run", json.dumps(run), flush=True)
    from tasktune.compare import compare

    return {"run": run, "table": compare([str(folder)])["methods"]}


def speed(out: Path, files: tuple[Path, Path], a) -> dict:
    runs = {}
    for repeat in range(a.speed_repeats):  # padded and packed interleaved: the host's slow spells hit both
        for packing in (False, True):
            name = f"packing={packing}" + (f" r{repeat}" if a.speed_repeats > 1 else "")
            folder = out / f"speed_packing_{packing}_r{repeat}"
            args = [*PEER_LORA, f"data.train={files[1]}", f"data.eval={files[0]}",
                    f"data.max_train_rows={a.speed_rows}", "data.max_eval_rows=4", f"train.packing={str(packing).lower()}",
                    "train.eval_during_training=false"]
            runs[name] = train_subprocess(out, args, folder, config=CONFIG)
            print(json.dumps(runs[name]), flush=True)
    return {"train": runs, "lm_head_trimming": trimming() if a.trimming else None}


def trimming(repeats: int = 3) -> dict:
    """Seconds per forward+backward of 2 x 512 tokens with 12 trained tokens per row: full logits vs trimmed."""
    import torch

    from tasktune.models.lm_head import logits_at, next_token_positions
    from tasktune.models.loading import resolve_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model("gemma-3-270m"), dtype=torch.float32)
    ids = torch.randint(10, 20000, (2, 512))
    labels = torch.full_like(ids, -100)
    labels[:, -12:] = ids[:, -12:]

    def full():
        model(input_ids=ids, labels=labels, use_cache=False).loss.backward()

    def trimmed():
        rows, cols, targets = next_token_positions(labels)
        torch.nn.functional.cross_entropy(logits_at(model, ids, None, rows, cols), targets).backward()

    times = {"full_logits_s": [], "trimmed_s": []}
    for _ in range(repeats):  # interleaved: drift on a shared machine hits both alike
        for name, fn in (("full_logits_s", full), ("trimmed_s", trimmed)):
            model.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    best = {k: round(min(v), 3) for k, v in times.items()}
    return {**best, "speedup": round(best["full_logits_s"] / best["trimmed_s"], 2), "all": times}


def stub_torchaudio(venv: Path) -> None:
    """llamafactory 0.9.5 imports torchaudio when it starts; no torchaudio wheel exists for torch 2.13.0 (the
    version both sides must share), and text SFT never calls it: an empty module stands in."""
    import subprocess

    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import site; print(site.getsitepackages()[0])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stub = Path(site) / "torchaudio" / "__init__.py"
    if not stub.parent.exists():
        stub.parent.mkdir()
        stub.write_text("# empty stand-in written by tasktune's bench/sft.py (text SFT never calls torchaudio)\n")


def peer(out: Path, files: tuple[Path, Path], a) -> dict:
    from tasktune.models.loading import resolve_model

    stub_torchaudio(Path(a.peer_venv))
    n_eval = min(a.peer_eval, a.eval)
    (out / "peer_eval.json").write_text(json.dumps(json.loads(files[0].read_text())[:n_eval], ensure_ascii=False))
    train_rows = json.loads(files[1].read_text())[:a.peer_rows]
    (out / "peer_train.json").write_text(json.dumps(train_rows, ensure_ascii=False))
    (out / "dataset_info.json").write_text(json.dumps(
        {"mug_train": {"file_name": "peer_train.json"}, "mug_eval": {"file_name": "peer_eval.json"}}))
    lf_dir = out / "llamafactory"
    lf_cfg = {"model_name_or_path": resolve_model("gemma-3-270m"), "stage": "sft", "do_train": True,
              "finetuning_type": "lora", "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.05, "lora_target": "all",
              "dataset_dir": str(out), "dataset": "mug_train", "eval_dataset": "mug_eval", "template": "gemma",
              "cutoff_len": 512, "overwrite_cache": True, "output_dir": str(lf_dir), "overwrite_output_dir": True,
              "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "learning_rate": 2.0e-4,
              "num_train_epochs": 1.0, "lr_scheduler_type": "linear", "warmup_ratio": 0.1, "bf16": False,
              "per_device_eval_batch_size": 1, "eval_strategy": "no", "do_eval": True, "save_strategy": "no",
              "logging_steps": 1, "report_to": "none", "seed": a.seed, "preprocessing_num_workers": 1}
    cfg_path = out / "llamafactory.yaml"  # JSON is YAML; llamafactory-cli reads .json configs wrongly (0.9.5)
    text = json.dumps(lf_cfg)
    reuse = a.reuse_peer and cfg_path.is_file() and cfg_path.read_text() == text and (out / "llamafactory.json").is_file()
    if reuse:  # the same config ran already: its figures stand (it takes ~8 minutes on 2 cores)
        lf_row = json.loads((out / "llamafactory.json").read_text())
    else:
        cfg_path.write_text(text)
        lf = measured([str(Path(a.peer_venv) / "bin" / "llamafactory-cli"), "train", str(cfg_path)])
        results = json.loads((lf_dir / "all_results.json").read_text())
        lf_row = {"train_samples_per_s": results.get("train_samples_per_second"), "eval_loss": results.get("eval_loss"),
                  "wall_s": lf["seconds"], "peak_rss_gib": lf["peak_rss_gib"]}
        (out / "llamafactory.json").write_text(json.dumps(lf_row))
    result = {"rows": {"train": len(train_rows), "eval": n_eval}, "llamafactory": {**lf_row, "reused": reuse}}
    for packing in (False, True):
        row = peer_tasktune(out, a, packing)
        row["ratio"] = round(row["train_samples_per_s_without_eval"] / lf_row["train_samples_per_s"], 2)
        result[f"tasktune packing={packing}"] = row
    return result


def peer_tasktune(out: Path, a, packing: bool) -> dict:
    """tasktune on the peer's rows and settings. Its eval loss comes from an evaluation after the epoch (the
    peer's do_eval runs after training), which Trainer counts in train time: samples/s is given with that
    evaluation and without it (train time minus the evaluation's own runtime), the peer's is without."""
    folder = out / f"peer_tasktune_packing_{packing}"
    tt = measured([sys.executable, "-m", "tasktune", "train", str(CONFIG), *PEER_LORA,
                   f"data.train={out / 'peer_train.json'}", f"data.eval={out / 'peer_eval.json'}",
                   "data.max_train_rows=null", "data.max_eval_rows=null", "train.eval_batch_size=1",
                   "train.lr_scheduler=linear", f"train.seed={a.seed}", f"train.packing={str(packing).lower()}",
                   "train.eval_during_training=true", "train.eval_sample=1", f"output_dir={folder}", "--overwrite"])
    runtime, evals = history_value(folder, "train_runtime"), history_value(folder, "eval_runtime")
    rows = a.peer_rows
    return {"train_samples_per_s": history_value(folder, "train_samples_per_second"),
            "train_samples_per_s_without_eval": round(rows / (runtime - evals), 3),
            "eval_loss": history_value(folder, "eval_loss"), "wall_s": tt["seconds"], "peak_rss_gib": tt["peak_rss_gib"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["quality", "speed", "peer"], choices=["quality", "speed", "peer"])
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--eval", type=int, default=40)
    p.add_argument("--speed-rows", type=int, default=16)
    p.add_argument("--speed-repeats", type=int, default=1, help="padded and packed runs, interleaved, each this often")
    p.add_argument("--no-trimming", dest="trimming", action="store_false",
                   help="speed part: skip the LM-head trimming measurement")
    p.add_argument("--peer-rows", type=int, default=32)
    p.add_argument("--peer-eval", type=int, default=20)
    p.add_argument("--peer-venv", default="/tmp/lfvenv")
    p.add_argument("--reuse-peer", action="store_true", help="keep LLaMA-Factory's figures when its config is unchanged")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="quality: a setting on top of the example's (e.g. task.answer_end=turn_end); pair with --out")
    p.add_argument("--runs", default="bench_runs/sft")
    p.add_argument("--out", default="bench/sft.json")
    a = p.parse_args()
    out = runs_folder(DATA, a.runs)
    if out is None:
        return
    import torch

    out = out.resolve()
    files = split(out, a.eval, a.train, a.split_seed)
    previous = json.loads(Path(a.out).read_text()) if Path(a.out).is_file() else {}
    result = {**previous, "rows": {"train": a.train, "eval": a.eval, "split_seed": a.split_seed},
              "cpu": torch.backends.cpu.get_cpu_capability()}
    for part in a.parts:  # each part's figures replace only its own entry
        result[part] = {"quality": quality, "speed": speed, "peer": peer}[part](out, files, a)
        Path(a.out).write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
        print(part, json.dumps(result[part], ensure_ascii=False)[:2000], flush=True)
    if "quality" in result:
        print_table(result["quality"]["table"], ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "exact_match"), 2)


if __name__ == "__main__":
    main()
