"""`tasktune data inspect`: row counts, label balance and a token-length histogram of one file.

Generic: counts, empty and duplicate texts, label balance of the task's label column, character
lengths and (with a model) token lengths of the longest text column, with a histogram PNG. The task
whose columns the file has (or `--task`) adds its own view (`Task.inspect`, e.g. extractive QA's
answered / no-answer counts and tokens per question + context pair).

Example:
    report = inspect_file("train.csv", model="runs/x/best", columns={"text": "review"})
    report["tokens"]["p95"]   # choose model.max_length from this
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tasktune.data.builtin import resolve_data_path
from tasktune.data.readers import read_table

PERCENTILES = (50, 90, 95, 99)


def percentiles(values: list[int]) -> dict:
    """min, p50/p90/p95/p99, max and mean of `values` (a non-empty list)."""
    ordered = sorted(values)
    out = {f"p{p}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in PERCENTILES}
    return {"min": ordered[0], **out, "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 1)}


def _task_for(columns: list[str], mapping: dict, name: str | None):
    """The task named `name`, or the first registered family whose required columns the file has."""
    from tasktune.tasks import TASKS, get_task

    if name:
        return get_task(name)
    for family in TASKS:
        task = get_task(family)
        # A family with no fixed columns (sft: three formats) is never guessed: name it with --task.
        if task.required_columns and all(mapping.get(c, c) in columns for c in task.required_columns):
            return task
    return None


def _text_column(rows: list[dict], columns: list[str]) -> str | None:
    """The column holding the longest strings on average: the text worth counting tokens of."""
    def mean_chars(col):
        return sum(len(r[col]) for r in rows if isinstance(r.get(col), str)) / max(len(rows), 1)

    texts = [c for c in columns if any(isinstance(r.get(c), str) for r in rows[:200])]
    return max(texts, key=mean_chars) if texts else None


def inspect_file(path: str, model: str | None = None, columns: dict | None = None, task: str | None = None,
                 out: str | None = None) -> dict:
    """Counts, label balance, character lengths and (with `model`) token lengths + histogram PNG."""
    columns = columns or {}
    table = read_table(resolve_data_path(path))
    family = _task_for(table.columns, columns, task)
    report: dict = {"file": path, "rows": len(table.rows), "columns": table.columns,
                    "task": family.name if family else None}
    text_col = _text_column(table.rows, table.columns)
    texts = [str(r.get(text_col) or "") for r in table.rows] if text_col else []
    if text_col:
        report.update(text_column=text_col, empty_texts=sum(1 for t in texts if not t.strip()),
                      duplicate_texts=len(texts) - len(set(texts)), chars=percentiles([len(t) for t in texts]))
    for field in (family.label_columns if family else []):
        col = columns.get(field, field)
        values = [r.get(col) for r in table.rows]
        if col in table.columns and all(isinstance(v, (str, int, float, bool)) or v is None for v in values):
            counts = Counter(str(v) for v in values)
            report["labels"] = {k: {"rows": v, "share": round(v / len(values), 4)} for k, v in counts.most_common()}
    tok = None
    if model:
        from tasktune.models.loading import load_tokenizer, resolve_model

        tok = load_tokenizer(resolve_model(model))
    view = getattr(family, "inspect", None)
    if view is not None:
        mapped = [{field: r.get(columns.get(field, field)) for field in family.required_columns +
                   family.optional_columns} for r in table.rows]
        report[family.name] = view(mapped, tok)
    if tok is not None and texts:
        report["tokens"] = _token_histogram(tok, texts, path, model, out)
    return report


def _token_histogram(tok, texts: list[str], path: str, model: str, out: str | None) -> dict:
    """Token-length percentiles of `texts` and a histogram PNG (in the working folder: data folders may be
    read-only)."""
    from tqdm.auto import tqdm

    from tasktune.plots import plot_histogram

    lengths = []
    for start in tqdm(range(0, len(texts), 512), desc="tokenize", unit="batch", disable=len(texts) < 2048):
        lengths += [len(ids) for ids in tok(texts[start:start + 512])["input_ids"]]
    stats = percentiles(lengths)
    png = out or Path(path).stem.replace(":", "-") + ".lengths.png"
    plot_histogram(lengths, png, f"token lengths of {Path(path).name} ({Path(model).name})",
                   {k: stats[k] for k in ("p95", "p99")})
    return {**stats, "histogram": png}
