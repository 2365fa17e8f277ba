"""Config: YAML + dotted overrides, typed validation, errors that name line and fix."""

from __future__ import annotations

import pytest

from tasktune.config import config_help, load_config, parse_override
from tasktune.errors import UserError


def test_overrides_parse_yaml_values_and_fill_defaults(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("task: classification\nmodel:\n  name: m\ntrain:\n  epochs: 3\n")
    cfg = load_config(cfg_file, ["train.epochs=2", "data.eval=0.2", "task.labels=[0, 1]", "data.test=null"])
    assert cfg.train.epochs == 2.0 and cfg.data.eval == 0.2 and cfg.task.labels == ["0", "1"]
    assert cfg.train.best_metric == "eval_loss" and cfg.output_dir == "runs/default"
    assert parse_override("a.b=x=y") == (["a", "b"], "x=y")


def test_unknown_key_names_line_and_suggestion(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("model:\n  name: m\ntrain:\n  epochs: 1\n  lerning_rate: 0.1\n")
    with pytest.raises(UserError) as exc:
        load_config(cfg_file)
    msg = str(exc.value)
    assert "line 5" in msg and "train.lerning_rate" in msg and "did you mean 'learning_rate'" in msg


def test_bad_values_name_the_override_or_line(tmp_path):
    with pytest.raises(UserError, match="command-line override train.epochs"):
        load_config(None, ["model.name=m", "train.epochs=many"])
    with pytest.raises(UserError, match="'model.name' is required"):
        load_config(None, ["train.epochs=1"])
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        load_config(None, ["model.name=m", "data.eval=1.5"])
    with pytest.raises(UserError, match="has no '='"):
        load_config(None, ["train.epochs"])


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [unclosed\ntrain: {}\n")
    with pytest.raises(UserError, match=r"bad.yaml line \d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_help_lists_every_field_with_its_description():
    lines = "\n".join(config_help())
    assert "train.early_stopping.patience" in lines and "Peak learning rate" in lines
    assert "model.name (required)" in lines
