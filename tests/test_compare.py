"""compare: runs and baselines on shared rows, bootstrap intervals, mismatched rows refused."""

from __future__ import annotations

import json

import pytest

from tasktune.compare import compare
from tasktune.errors import UserError


def _write(path, gold, pred):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"r{i}", "gold": g, "label": p}) + "\n"
                            for i, (g, p) in enumerate(zip(gold, pred))))


def test_compare_runs_and_baselines(tmp_path):
    gold = ["pos"] * 60 + ["neg"] * 40
    _write(tmp_path / "good/eval/eval/predictions.jsonl", gold, gold[:50] + ["neg"] * 10 + gold[60:])
    _write(tmp_path / "good/eval/eval/baselines/majority.jsonl", gold, ["pos"] * 100)
    _write(tmp_path / "weak/eval/eval/predictions.jsonl", gold, ["pos", "neg"] * 50)
    result = compare([str(tmp_path / "good"), str(tmp_path / "weak")], out=str(tmp_path / "c.json"), samples=200)
    m = result["methods"]
    assert set(m) == {"good", "weak", "majority"} and result["rows"] == 100
    assert m["good"]["accuracy"]["value"] == 0.9 and m["majority"]["accuracy"]["value"] == 0.6
    for method in m.values():
        for key in ("accuracy", "macro_f1"):
            lo, hi = method[key]["ci95"]
            assert lo <= method[key]["value"] <= hi and hi - lo < 0.3
    assert m["good"]["accuracy"]["ci95"][0] > m["majority"]["accuracy"]["ci95"][1]  # separated
    assert json.loads((tmp_path / "c.json").read_text())["methods"]["weak"]["accuracy"]["value"] == 0.5

    _write(tmp_path / "other/eval/eval/predictions.jsonl", gold[:50], gold[:50])
    with pytest.raises(UserError, match="other rows"):
        compare([str(tmp_path / "good"), str(tmp_path / "other")])
    with pytest.raises(UserError, match="tasktune eval"):
        compare([str(tmp_path / "missing")])
