"""data.skip_invalid_rows drops bad rows with a warning instead of stopping."""

from __future__ import annotations

import pytest
from conftest import make_rows, write_jsonl

from tasktune.config import load_config
from tasktune.data.dataset import load_splits
from tasktune.errors import UserError
from tasktune.tasks import get_task


def test_skip_invalid_rows(tmp_path, caplog):
    rows = make_rows(20) + [{"text": "", "label": "positive"}, {"text": "ok", "label": None}]
    write_jsonl(tmp_path / "t.jsonl", rows)
    overrides = ["task=classification", "model.name=x", f"data.train={tmp_path / 't.jsonl'}", "data.eval=null"]
    with pytest.raises(UserError, match=r"t.jsonl line 21: empty or missing text.*skip_invalid_rows"):
        load_splits(load_config(None, overrides), get_task("classification"))
    splits = load_splits(load_config(None, overrides + ["data.skip_invalid_rows=true"]), get_task("classification"))
    assert len(splits.train) == 20 and splits.info["files"]["train"]["rows"] == 22
