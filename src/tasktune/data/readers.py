"""Read rows from jsonl, json, csv, tsv and parquet files (UTF-8, with or without BOM).

Rows keep where they came from (file and line), so a bad row is reported as `file line N`.

Example:
    table = read_table("train.csv")
    table.rows[0]        # {'label': '1', 'review': '...'}
    table.where(0)       # 'train.csv line 2'
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tasktune.errors import UserError

FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")


@dataclass
class Table:
    """Rows of one file plus their source positions; `lines[i]` is row i's line (or item) number."""

    path: str
    rows: list[dict]
    lines: list[int] = field(default_factory=list)
    unit: str = "line"

    def where(self, i: int) -> str:
        return f"{self.path} {self.unit} {self.lines[i] if self.lines else i + 1}"

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}  # every row: a JSON column may first appear late in a file
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)


def detect_format(path: str | Path) -> str:
    """Format from the file suffix; `.ndjson` counts as jsonl."""
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = {"ndjson": "jsonl"}.get(suffix, suffix)
    if suffix not in FORMATS:
        raise UserError(f"{path}: unknown data format '.{suffix}'; use one of {', '.join(FORMATS)}")
    return suffix


def read_table(path: str | Path) -> Table:
    """Read a data file into a Table; raises UserError for a missing, unreadable or empty file."""
    path = str(path)
    if not Path(path).is_file():
        raise UserError(f"data file '{path}' not found; check the path in data.train / data.eval / --data")
    reader = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv,
              "tsv": _read_csv, "parquet": _read_parquet}[detect_format(path)]
    try:
        table = reader(path)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); re-save the file as UTF-8") from None
    if not table.rows:
        raise UserError(f"{path}: no rows; the file is empty or has only a header")
    return table


def _read_jsonl(path: str) -> Table:
    rows, lines = [], []
    with open(path, encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} line {n}: invalid JSON ({exc.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise UserError(f"{path} line {n}: each line must be a JSON object, got {type(row).__name__}")
            rows.append(row)
            lines.append(n)
    return Table(path, rows, lines)


def _read_json(path: str) -> Table:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        # {"data": [...]} and similar one-key wrappers are common; take the first list value.
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise UserError(f"{path}: expected a JSON list of objects (or jsonl); convert it first")
    return Table(path, data, list(range(1, len(data) + 1)), unit="item")


def _read_csv(path: str) -> Table:
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    csv.field_size_limit(sys.maxsize)
    rows, lines = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for row in reader:
            if None in row:
                raise UserError(f"{path} line {reader.line_num}: more fields than the header has; "
                                "quote fields that contain the delimiter")
            rows.append(row)
            lines.append(reader.line_num)
    return Table(path, rows, lines)


def _read_parquet(path: str) -> Table:
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    return Table(path, rows, list(range(1, len(rows) + 1)), unit="row")


def map_columns(table: Table, columns: dict[str, str], required: list[str], optional: list[str] = ()) -> list[dict]:
    """Rows renamed to task fields using `columns` (task field -> file column).

    Raises UserError when a required column is missing, naming the fix in data.columns.
    """
    present = set(table.columns)
    out_fields = {}
    for name in list(required) + list(optional):
        col = columns.get(name, name)
        if col in present:
            out_fields[name] = col
        elif name in required:
            hint = f"map it with data.columns.{name}=<column>"
            raise UserError(f"{table.path}: column '{col}' not found (columns: {', '.join(sorted(present))}); {hint}")
    return [{name: row.get(col) for name, col in out_fields.items()} for row in table.rows]
