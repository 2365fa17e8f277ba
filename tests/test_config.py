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
    cfg_file.write_text("task: classification\nmodel:\n  name: m\ntrain:\n  epochs: 1\n  lerning_rate: 0.1\n")
    with pytest.raises(UserError) as exc:
        load_config(cfg_file)
    msg = str(exc.value)
    assert "line 6" in msg and "train.lerning_rate" in msg and "did you mean 'learning_rate'" in msg


def test_bad_values_name_the_override_or_line(tmp_path):
    with pytest.raises(UserError, match="command-line override train.epochs"):
        load_config(None, ["task=classification", "model.name=m", "train.epochs=many"])
    with pytest.raises(UserError, match="'model.name' is required"):
        load_config(None, ["task=classification", "train.epochs=1"])
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        load_config(None, ["task=classification", "model.name=m", "data.eval=1.5"])
    with pytest.raises(UserError, match="has no '='"):
        load_config(None, ["train.epochs"])
    with pytest.raises(UserError, match="'task.name' is required"):
        load_config(None, ["model.name=m"])
    with pytest.raises(UserError, match=r"override task.name: unknown task 'clasification' \(did you mean "
                                        r"'classification'\?\); available: classification, extractive_qa"):
        load_config(None, ["task.name=clasification", "model.name=m"])


def test_values_the_engine_accepts_are_checked_when_read(tmp_path):
    from transformers.trainer_utils import SchedulerType

    from tasktune.config import SCHEDULERS

    assert set(SCHEDULERS) == {s.value for s in SchedulerType}  # in step with transformers
    with pytest.raises(UserError, match=r"override train.lr_scheduler: 'train.lr_scheduler': Input should be "
                                        r"'linear', 'cosine'"):
        load_config(None, ["task=classification", "model.name=m", "train.lr_scheduler=cosin"])
    cfg = load_config(None, ["task=classification", "model.name=m", "train.report_to=tensorboard"])
    assert cfg.train.report_to == ["tensorboard"]  # one name, as TrainingArguments takes it
    assert load_config(None, ["task=classification", "model.name=m", "train.report_to=none"]).train.report_to == []


def test_each_family_has_its_own_task_section(tmp_path):
    qa = load_config(None, ["task=extractive_qa", "model.name=m", "task.doc_stride=32"])
    assert qa.task.doc_stride == 32 and not hasattr(qa.task, "verbalizer")
    with pytest.raises(UserError, match=r"unknown key 'task.doc_stride'"):
        load_config(None, ["task=classification", "model.name=m", "task.doc_stride=32"])
    with pytest.raises(UserError, match=r"model.method is now task.method .*task.method: label_scoring"):
        load_config(None, ["task=classification", "model.name=m", "model.method=label_scoring"])
    with pytest.raises(UserError, match=r"train.class_weights is now task.class_weights"):
        load_config(None, ["task=classification", "model.name=m", "train.class_weights=balanced"])
    # The resolved config round-trips with the family's own keys.
    from tasktune.config import config_from_dict

    again = config_from_dict(qa.model_dump(mode="json"))
    assert again.task.doc_stride == 32 and type(again.task) is type(qa.task)


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  name: [unclosed\ntrain: {}\n")
    with pytest.raises(UserError, match=r"bad.yaml line \d+: invalid YAML"):
        load_config(bad)
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_help_lists_every_field_with_its_description():
    from tasktune.config import task_help

    lines = "\n".join(config_help())
    assert "train.early_stopping.patience" in lines and "Peak learning rate" in lines
    assert "model.name (required)" in lines and "task.doc_stride" not in lines
    qa = "\n".join(task_help(["extractive_qa"]))
    assert "task.doc_stride (default 64)" in qa and "task.verbalizer" not in qa
