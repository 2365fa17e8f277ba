"""The Task protocol is the only seam: a toy family plugs in with one registry line and runs through
train, eval (with baselines), compare, predict and data validate with no other edit."""

from __future__ import annotations

import json
import random

import pytest
from conftest import write_jsonl

from tasktune.cli import main


def _rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        good = rng.randint(0, 4)
        words = ["good"] * good + ["room"] * (4 - good)
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "target": float(good)})
    return rows


@pytest.fixture()
def regression(monkeypatch):
    from toy_regression import Regression

    from tasktune import tasks

    monkeypatch.setitem(tasks.TASKS, "regression", Regression)  # the one registry line
    return Regression


def test_a_new_family_runs_end_to_end(regression, tiny_bert, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", _rows(96, 1))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", _rows(24, 2))
    cfg = tmp_path / "reg.yaml"
    cfg.write_text(f"task: {{name: regression, scale: 4.0}}\nmodel: {{name: {tiny_bert}, max_length: 16}}\n"
                   f"data: {{train: {train}, eval: {eval_}}}\n"
                   "train: {epochs: 15, batch_size: 8, learning_rate: 1.0e-2, warmup_ratio: 0.1, best_metric: eval_mse, "
                   "logging_steps: 4}\n"
                   "baseline: {after_training: true}\n", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["data", "validate", str(cfg), f"output_dir={run}"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "regression"
    assert main(["train", str(cfg), f"output_dir={run}"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tuned"]["mse"] < out["mean"]["mse"]  # learnt more than the mean baseline
    history = json.loads((run / "metrics_history.json").read_text())
    assert any("eval_mse" in h and "eval_mae" in h for h in history)  # the task's metrics during training
    meta = json.loads((run / "best/tasktune.json").read_text())
    assert meta["config"]["task"] == {"name": "regression", "scale": 4.0}

    assert main(["compare", str(run), "--out", str(tmp_path / "c.json"), "--samples", "200"]) == 0
    table = json.loads((tmp_path / "c.json").read_text())
    assert set(table["methods"]) == {"run", "mean"} and table["task"] == "regression"
    lo, hi = table["methods"]["run"]["mse"]["ci95"]
    assert lo <= table["methods"]["run"]["mse"]["value"] <= hi

    capsys.readouterr()
    assert main(["predict", str(run), "--text", "good good good good"]) == 0
    high = json.loads(capsys.readouterr().out)["value"]
    assert main(["predict", str(run), "--text", "room room room room"]) == 0
    assert high > json.loads(capsys.readouterr().out)["value"]

    assert main(["train", str(cfg), f"output_dir={tmp_path / 'x'}", "train.best_metric=eval_f1"]) == 2
    err = capsys.readouterr().err
    assert "regression does not report 'eval_f1'; choose one of eval_loss, eval_mse, eval_mae" in err
