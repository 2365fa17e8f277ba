"""`tasktune data convert`: SQuAD/CMRC JSON and field records into QA rows, counted, nothing lost silently."""

from __future__ import annotations

import json

import pytest
from conftest import write_jsonl

from tasktune.cli import main
from tasktune.data.convert import convert


def _squad(tmp_path):
    data = {"version": "v2.0", "data": [{"title": "t", "paragraphs": [{
        "context": "北京是中国的首都。Paris is in France.",
        "qas": [
            {"id": "q1", "question": "中国的首都？", "answers": [{"text": "北京", "answer_start": 0}]},
            {"id": "q2", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 20}]},  # off by one
            {"id": "q3", "question": "Who?", "is_impossible": True, "answers": []},
            {"id": "q4", "question": "What?", "answers": [{"text": "Berlin", "answer_start": 3}]},  # not there
            {"id": "q5", "question": " ", "answers": [{"text": "北京", "answer_start": 0}]},
        ]}]}]}
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def _read(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_squad_conversion_repairs_offsets_and_lists_what_it_leaves_out(tmp_path):
    out = tmp_path / "qa.jsonl"
    counts = convert("squad", str(_squad(tmp_path)), str(out))
    rows = {r["id"]: r for r in _read(out)}
    assert set(rows) == {"q1", "q2", "q3"}
    assert rows["q2"]["answers"] == [{"text": "France", "start": 21}]
    assert rows["q2"]["context"][21:27] == "France"
    assert rows["q3"]["answers"] == []
    assert counts == {"articles": 1, "paragraphs": 1, "questions": 5, "has_answer": 2, "no_answer": 1,
                      "starts_repaired": 1, "answers_not_found": 1, "empty_questions": 1}
    left = _read(tmp_path / "qa.jsonl.left_out.jsonl")
    assert {x["id"] for x in left} == {"q4", "q5"}


def test_fields_conversion_counts_and_negative_ratio(tmp_path):
    records = [{"id": f"r{i}", "text": f"姓名：张{i}。城市：北京。", "fields": {"name": f"张{i}", "city": "北京", "title": None}}
               for i in range(20)]
    records.append({"id": "odd", "text": "姓名：李四。", "fields": {"name": "李五"}})  # value not in the text
    src = write_jsonl(tmp_path / "records.jsonl", records)
    questions = tmp_path / "fields.yaml"
    questions.write_text("name: 姓名是什么？\ncity: 哪个城市？\ntitle: 职务是什么？\n", encoding="utf-8")

    out = tmp_path / "all.jsonl"
    counts = convert("fields", str(src), str(out), questions=str(questions))
    assert counts["records"] == 21 and counts["positives"] == 40 and counts["negatives_null"] == 20
    assert counts["not_found_in_text"] == 1 and counts["negatives_paired"] == 0
    rows = _read(out)
    positive = next(r for r in rows if r["id"] == "r3:name")
    assert positive["answers"] == [{"text": "张3", "start": 3}] and positive["field"] == "name"
    assert positive["record_id"] == "r3" and positive["question"] == "姓名是什么？"
    assert _read(tmp_path / "all.jsonl.left_out.jsonl")[0] == {"record_id": "odd", "field": "name", "value": "李五",
                                                               "why": "not in the text verbatim"}

    ratio = tmp_path / "ratio.jsonl"
    counts = convert("fields", str(src), str(ratio), questions=str(questions), negative_ratio=0.2)
    assert counts["negatives"] == 10 and counts["samples"] == 50  # 10 / 50 = 0.2
    # too few nulls for 60%: asking "odd" for its unlisted city/title (pairs) fills in after the nulls
    many = convert("fields", str(src), str(tmp_path / "many.jsonl"), questions=str(questions), negative_ratio=0.6)
    assert many["negatives_null"] == 20 and many["negatives_paired"] == 2


def test_conversion_is_reused_and_never_overwritten_silently(tmp_path, capsys):
    src, out = _squad(tmp_path), tmp_path / "qa.jsonl"
    assert main(["data", "convert", "--from", "squad", str(src), str(out)]) == 0
    before = out.stat().st_mtime_ns
    assert main(["data", "convert", "--from", "squad", str(src), str(out)]) == 0  # same inputs: reused
    assert out.stat().st_mtime_ns == before
    capsys.readouterr()
    src.write_text(src.read_text(encoding="utf-8").replace("Paris", "Lyon"), encoding="utf-8")
    assert main(["data", "convert", "--from", "squad", str(src), str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "convert", "--from", "squad", str(src), str(out), "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--from", "fields", "IN", "OUT"], "--questions"),
    (["--from", "squad", "missing.json", "OUT"], "not found"),
])
def test_convert_user_errors(tmp_path, capsys, args, message):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": 1}])
    args = [str(src) if a == "IN" else str(tmp_path / "o.jsonl") if a == "OUT" else a for a in args]
    assert main(["data", "convert", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_qa_rows_are_checked_with_their_line(qa_bert, tmp_path, capsys):
    rows = [{"id": "a", "question": "q?", "context": "北京是首都", "answers": [{"text": "北京", "start": 0}]},
            {"id": "b", "question": "q?", "context": "上海很大", "answers": [{"text": "广州", "start": 0}]}]
    train = write_jsonl(tmp_path / "qa.jsonl", rows)
    args = ["data", "validate", "-", "task=extractive_qa", f"model.name={qa_bert}", f"data.train={train}"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    args[2] = str(cfg)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "qa.jsonl line 2" in err and "广州" in err and "does not occur in the context" in err
    assert main(args[:-1] + [f"data.train={train}", "model.max_length=64", "task.doc_stride=40"]) == 2
    assert "task.doc_stride" in capsys.readouterr().err


def test_split_keeps_a_context_on_one_side():
    from qa_data import make_records, qa_rows

    from tasktune.data.split import stratified_split
    from tasktune.tasks.extractive_qa import ExtractiveQA

    rows = qa_rows(make_records(40, seed=8))
    group = lambda r: ExtractiveQA().split_keys(r)[1]  # noqa: E731
    kept, held = stratified_split(rows, 0.2, seed=3, group=group)
    assert {r["record_id"] for r in kept}.isdisjoint({r["record_id"] for r in held})
    assert 0.15 <= len(held) / len(rows) <= 0.3 and len(kept) + len(held) == len(rows)
    assert held == stratified_split(rows, 0.2, seed=3, group=group)[1]  # seeded


def test_data_inspect_has_a_qa_view(qa_bert, tmp_path, capsys):
    from transformers import AutoTokenizer

    from qa_data import make_records, qa_rows

    rows = qa_rows(make_records(40, seed=4))
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    assert main(["data", "inspect", str(path), "--model", qa_bert, "--out", str(tmp_path / "h.png")]) == 0
    report = json.loads(capsys.readouterr().out)
    qa = report["extractive_qa"]
    assert report["task"] == "extractive_qa" and report["text_column"] == "context"
    assert qa["answered"] == sum(1 for r in rows if r["answers"]) and qa["no_answer"] == len(rows) - qa["answered"]
    assert qa["answered"] and qa["no_answer"]
    assert qa["contexts"] == len({r["context"] for r in rows}) and set(qa["fields"]) == {"name", "city", "title"}
    assert report["chars"]["max"] == max(len(r["context"]) for r in rows)  # the context is the long text
    tok = AutoTokenizer.from_pretrained(qa_bert)
    pairs = [len(ids) for ids in tok([r["question"] for r in rows], [r["context"] for r in rows])["input_ids"]]
    assert qa["pair_tokens"]["max"] == max(pairs)  # question + context, as the windows see them
    assert qa["one_window_share"]["256"] == round(sum(n <= 256 for n in pairs) / len(pairs), 4)
