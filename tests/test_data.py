"""Readers, column mapping, stratified splits and row checks."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tasktune.data.readers import map_columns, read_table
from tasktune.data.split import sample_rows, stratified_split
from tasktune.errors import UserError


def test_every_format_reads_the_same_rows(tmp_path):
    rows = [{"text": "好评，房间干净", "label": "1"}, {"text": "a, quoted \"x\"", "label": "0"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    (tmp_path / "a.json").write_text(json.dumps({"data": rows}, ensure_ascii=False))
    csv_text = 'label,text\n1,"好评，房间干净"\n0,"a, quoted ""x"""\n'
    (tmp_path / "a.csv").write_bytes("\ufeff".encode() + csv_text.encode())  # with BOM
    (tmp_path / "a.tsv").write_text('label\ttext\n1\t好评，房间干净\n0\ta, quoted "x"\n')
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for name in ("a.jsonl", "a.json", "a.csv", "a.tsv", "a.parquet"):
        table = read_table(tmp_path / name)
        got = [{"text": r["text"], "label": str(r["label"])} for r in table.rows]
        assert got == rows, name
    assert read_table(tmp_path / "a.csv").where(1) == f"{tmp_path / 'a.csv'} line 3"


def test_reader_errors_name_file_and_line(tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(UserError, match="bad.jsonl line 2: invalid JSON"):
        read_table(tmp_path / "bad.jsonl")
    (tmp_path / "empty.csv").write_text("text,label\n")
    with pytest.raises(UserError, match="no rows"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(UserError, match="unknown data format"):
        read_table(tmp_path / "x.xlsx")
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        read_table(tmp_path / "latin.csv")


def test_column_mapping(tmp_path):
    (tmp_path / "r.csv").write_text("review,sentiment\ngood,1\n")
    table = read_table(tmp_path / "r.csv")
    assert map_columns(table, {"text": "review", "label": "sentiment"}, ["text", "label"]) == \
        [{"text": "good", "label": "1"}]
    with pytest.raises(UserError, match=r"column 'text' not found \(columns: review, sentiment\); "
                                        r"map it with data.columns.text="):
        map_columns(table, {}, ["text", "label"])


def test_stratified_split_keeps_label_shares_and_is_seeded():
    rows = [{"id": i, "label": "a" if i % 4 else "b"} for i in range(200)]
    kept, held = stratified_split(rows, 0.2, seed=1, key=lambda r: r["label"])
    assert len(held) == 40 and Counter(r["label"] for r in held) == {"a": 30, "b": 10}
    assert {r["id"] for r in kept}.isdisjoint(r["id"] for r in held)
    assert stratified_split(rows, 0.2, seed=1, key=lambda r: r["label"])[1] == held
    assert stratified_split(rows, 0.2, seed=2, key=lambda r: r["label"])[1] != held
    # A label with two rows keeps one on each side.
    tiny = rows + [{"id": "r1", "label": "rare"}, {"id": "r2", "label": "rare"}]
    k, h = stratified_split(tiny, 0.1, seed=0, key=lambda r: r["label"])
    assert sum(r["label"] == "rare" for r in k) == 1 and sum(r["label"] == "rare" for r in h) == 1
    assert len(sample_rows(rows, 20, seed=0, key=lambda r: r["label"])) == 20


def test_split_seed_is_separate_from_training_seed(tmp_path):
    from conftest import make_rows, write_jsonl

    from tasktune.config import load_config
    from tasktune.data.dataset import load_splits
    from tasktune.tasks import get_task

    write_jsonl(tmp_path / "t.jsonl", make_rows(60))
    base = ["task=classification", "model.name=x", f"data.train={tmp_path / 't.jsonl'}", "data.eval=0.2"]

    def eval_ids(*extra):
        return load_splits(load_config(None, base + list(extra)), get_task("classification")).info["split"]["eval_ids"]

    assert eval_ids("train.seed=1", "data.seed=5") == eval_ids("train.seed=2", "data.seed=5")
    assert eval_ids("train.seed=1") != eval_ids("train.seed=2")  # default: the training seed
