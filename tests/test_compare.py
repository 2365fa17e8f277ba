"""compare: runs and baselines on shared rows, bootstrap intervals, mismatched rows refused; any family."""

from __future__ import annotations

import json

import pytest

from tasktune.compare import compare
from tasktune.errors import UserError


def _meta(run, task, state):
    (run / "best").mkdir(parents=True, exist_ok=True)
    (run / "best/tasktune.json").write_text(json.dumps({"task": task, "state": state}))


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def _labels(gold, pred):
    return [{"id": f"r{i}", "gold": g, "label": p} for i, (g, p) in enumerate(zip(gold, pred))]


def test_compare_runs_and_baselines(tmp_path):
    state = {"labels": ["neg", "pos"], "label_counts": {}}
    gold = ["pos"] * 60 + ["neg"] * 40
    for name in ("good", "weak", "other"):
        _meta(tmp_path / name, "classification", state)
    _write(tmp_path / "good/eval/eval/predictions.jsonl", _labels(gold, gold[:50] + ["neg"] * 10 + gold[60:]))
    _write(tmp_path / "good/eval/eval/baselines/majority.jsonl", _labels(gold, ["pos"] * 100))
    _write(tmp_path / "weak/eval/eval/predictions.jsonl", _labels(gold, ["pos", "neg"] * 50))
    result = compare([str(tmp_path / "good"), str(tmp_path / "weak")], out=str(tmp_path / "c.json"), samples=200)
    m = result["methods"]
    assert set(m) == {"good", "weak", "majority"} and result["rows"] == 100
    assert m["good"]["accuracy"]["value"] == 0.9 and m["majority"]["accuracy"]["value"] == 0.6
    for method in m.values():
        for key in ("accuracy", "macro_f1"):
            lo, hi = method[key]["ci95"]
            assert lo <= method[key]["value"] <= hi and hi - lo < 0.3
    assert m["good"]["accuracy"]["ci95"][0] > m["majority"]["accuracy"]["ci95"][1]  # separated
    assert m["majority"]["macro_f1"]["value"] == pytest.approx(0.375, abs=1e-4)  # (0.75 + 0) / 2
    assert json.loads((tmp_path / "c.json").read_text())["methods"]["weak"]["accuracy"]["value"] == 0.5

    _write(tmp_path / "other/eval/eval/predictions.jsonl", _labels(gold[:50], gold[:50]))
    with pytest.raises(UserError, match="other rows"):
        compare([str(tmp_path / "good"), str(tmp_path / "other")])
    with pytest.raises(UserError, match="not a finished tasktune run"):
        compare([str(tmp_path / "missing")])


def test_compare_extractive_qa_runs(tmp_path):
    """EM/F1 in %, CMRC rules for Chinese, the no-answer baseline scored against the run's gold."""
    state = {"language": "zh", "fields": {}, "null_threshold": 0.0, "field_thresholds": {}, "counts": {}}
    golds = [["北京"], ["上海市"], [], ["王伟"]]
    answers = ["北京", "上海", None, "张伟"]   # exact, F1 0.8, right "no answer", F1 0.5
    _meta(tmp_path / "qa", "extractive_qa", state)
    _write(tmp_path / "qa/eval/eval/predictions.jsonl",
           [{"id": f"q{i}", "answer": a, "gold": g} for i, (a, g) in enumerate(zip(answers, golds))])
    _write(tmp_path / "qa/eval/eval/baselines/no_answer.jsonl", [{"id": f"q{i}", "answer": None} for i in range(4)])
    m = compare([str(tmp_path / "qa")], samples=200)["methods"]
    assert m["qa"]["exact"]["value"] == 50.0 and m["qa"]["f1"]["value"] == pytest.approx(100 * (1 + 0.8 + 1 + 0.5) / 4)
    assert m["no_answer"]["exact"]["value"] == 25.0 and m["no_answer"]["f1"]["value"] == 25.0
    _meta(tmp_path / "cls", "classification", {"labels": ["a", "b"], "label_counts": {}})
    with pytest.raises(UserError, match="one task family"):
        compare([str(tmp_path / "qa"), str(tmp_path / "cls")])


def test_paired_difference_settles_what_overlapping_intervals_cannot(tmp_path):
    """B is right on a subset of A's rows: separate intervals overlap, the paired interval of A - B excludes 0."""
    state = {"labels": ["neg", "pos"], "label_counts": {}}
    gold = ["pos", "neg"] * 50
    flip = {"pos": "neg", "neg": "pos"}
    for name, right in (("a", 70), ("b", 62)):
        _meta(tmp_path / name, "classification", state)
        _write(tmp_path / f"{name}/eval/eval/predictions.jsonl",
               _labels(gold, [g if i < right else flip[g] for i, g in enumerate(gold)]))
    result = compare([str(tmp_path / "a"), str(tmp_path / "b")], samples=500, against="b",
                     out=str(tmp_path / "c.json"))
    m, d = result["methods"], result["differences"]
    assert m["a"]["accuracy"]["ci95"][0] < m["b"]["accuracy"]["ci95"][1]  # separate intervals overlap
    assert set(d) == {"a"} and d["a"]["accuracy"]["value"] == pytest.approx(0.08)
    lo, hi = d["a"]["accuracy"]["ci95"]
    assert 0 < lo < 0.08 < hi < 0.16  # only rows 62-69 differ: every resample has A >= B
    assert json.loads((tmp_path / "c.json").read_text())["against"] == "b"
    with pytest.raises(UserError, match="available: a, b"):
        compare([str(tmp_path / "a"), str(tmp_path / "b")], against="bm25")
