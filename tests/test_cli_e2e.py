"""The real entry point in subprocesses: train -> eval -> predict, inspect; and 2-process training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import base_config

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def tasktune(*args, stdin=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "tasktune", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=ENV, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_train_eval_predict_through_the_cli(tiny_bert, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"task: classification\nmodel:\n  name: {tiny_bert}\n  max_length: 32\n"
                   f"data:\n  train: {train}\n  eval: {eval_}\n")
    run = tmp_path / "run"
    out = tasktune("train", cfg, f"output_dir={run}", "train.epochs=4", "train.learning_rate=5e-3",
                   "train.batch_size=8", "train.seed=7")
    assert json.loads(out.stdout)["accuracy"] > 0.8
    again = tasktune("train", cfg, f"output_dir={run}", check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr

    tasktune("eval", run, "--baseline", "--data", eval_)
    comparison = json.loads((run / "eval/eval/baseline_comparison.json").read_text())
    assert comparison["methods"]["majority"]["accuracy"] == pytest.approx(20 / 30)
    assert comparison["methods"]["model"]["accuracy"] > comparison["methods"]["majority"]["accuracy"]

    one = tasktune("predict", run, "--text", "great clean room 好")
    assert json.loads(one.stdout.strip().splitlines()[-1])["label"] == "positive"
    tasktune("predict", run, "--input", eval_, "--output", tmp_path / "preds.jsonl")
    preds = [json.loads(x) for x in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(preds) == 30 and set(preds[0]["probs"]) == {"negative", "positive"}
    typed = tasktune("predict", run, "--interactive", stdin="awful dirty 脏\n\ngood lovely 棒\n")
    labels = [json.loads(x)["label"] for x in typed.stdout.strip().splitlines()]
    assert labels == ["negative", "positive"]


def test_data_inspect_writes_histogram(tiny_bert, sentiment_files, tmp_path, capsys):
    from tasktune.cli import main

    train, _ = sentiment_files
    assert main(["data", "inspect", str(train), "--model", tiny_bert, "--out", str(tmp_path / "h.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 120 and report["labels"]["positive"]["rows"] == 80
    assert 6 <= report["tokens"]["p50"] <= report["tokens"]["max"] <= 32
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_two_processes_train_and_only_rank0_writes(tiny_bert, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("{}\n")
    run = tmp_path / "run"
    # On CPU, `--multi_gpu` is what makes accelerate start a torchrun group (gloo); `--cpu` runs one process.
    # Through this interpreter rather than the `accelerate` script on PATH, which a fresh venv may lack.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "tasktune", "train", str(cfg),
           *base_config(tiny_bert, train, eval_, run, **{"train.effective_batch_size": 16, "train.epochs": 1})]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = (run / "train.log").read_text()
    assert "8 per device x 2 process(es) x 1 accumulation = 16" in log
    assert log.count("tasktune 0.1.0: classification") == 1  # one writer
    env = json.loads((run / "env.json").read_text())
    assert env["processes"] == 2
    steps = max(h["step"] for h in json.loads((run / "metrics_history.json").read_text()))
    assert steps == 8  # 120 rows / 16 per step, rounded up
    assert (run / "best/tasktune.json").is_file() and (run / "eval/eval/metrics.json").is_file()
    assert list(run.glob("checkpoint-*/rng_state_1.pth"))  # both ranks wrote their RNG state
