"""`tasktune data inspect`: row counts, label balance and a token-length histogram of one file.

Extractive-QA files (question and context columns) get a QA view: answered / no-answer counts,
fields, distinct contexts, question lengths, and with a model the token length of each
question + context pair and the share that fits in one window at common max lengths.

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
WINDOW_LENGTHS = (256, 384, 512)  # common model.max_length settings for extractive_qa


def _percentiles(values: list[int]) -> dict:
    ordered = sorted(values)
    out = {f"p{p}": ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] for p in PERCENTILES}
    return {"min": ordered[0], **out, "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 1)}


def inspect_file(path: str, model: str | None = None, columns: dict | None = None,
                 text_field: str = "text", label_field: str = "label", out: str | None = None) -> dict:
    """Counts, label balance, character lengths and (with `model`) token lengths + histogram PNG."""
    columns = columns or {}
    table = read_table(resolve_data_path(path))
    qa = all(columns.get(c, c) in table.columns for c in ("question", "context"))
    if qa and text_field == "text" and "text" not in columns:
        text_field = "context"  # in QA rows the long text is the context
    text_col, label_col = columns.get(text_field, text_field), columns.get(label_field, label_field)
    report: dict = {"file": path, "rows": len(table.rows), "columns": table.columns}
    texts = [str(r.get(text_col) or "") for r in table.rows]
    report["empty_texts"] = sum(1 for t in texts if not t.strip())
    report["duplicate_texts"] = len(texts) - len(set(texts))
    if label_col in table.columns:
        counts = Counter(str(r.get(label_col)) for r in table.rows)
        report["labels"] = {k: {"rows": v, "share": round(v / len(table.rows), 4)} for k, v in counts.most_common()}
    if text_col in table.columns:
        report["chars"] = _percentiles([len(t) for t in texts])
    if qa:
        report["qa"] = _qa_summary(table.rows, columns)
    if model and text_col in table.columns:
        from tqdm.auto import tqdm

        from tasktune.models.loading import load_tokenizer, resolve_model
        from tasktune.plots import plot_histogram

        tok = load_tokenizer(resolve_model(model))
        questions = [str(r.get(columns.get("question", "question")) or "") for r in table.rows] if qa else None
        lengths = []
        for start in tqdm(range(0, len(texts), 512), desc="tokenize", unit="batch", disable=len(texts) < 2048):
            pair = (questions[start:start + 512],) if qa else ()
            lengths += [len(ids) for ids in tok(*pair, texts[start:start + 512])["input_ids"]]
        report["tokens"] = _percentiles(lengths)
        if qa:  # question + context pairs: longer ones are read in overlapping windows
            report["qa"]["one_window_share"] = {L: round(sum(n <= L for n in lengths) / len(lengths), 4)
                                                for L in WINDOW_LENGTHS}
        png = out or Path(path).stem.replace(":", "-") + ".lengths.png"  # cwd: data folders may be read-only
        plot_histogram(lengths, png, f"token lengths of {Path(path).name} ({Path(model).name})",
                       {k: report["tokens"][k] for k in ("p95", "p99")})
        report["histogram"] = png
    return report


def _qa_summary(rows: list[dict], columns: dict) -> dict:
    """Answered / no-answer counts, fields, distinct contexts and question lengths of QA rows."""
    from tasktune.data.convert import answers_cell

    def answers(r):
        try:
            return answers_cell(r.get(columns.get("answers", "answers")))
        except ValueError:
            return None  # counted as unlabelled; training names the line and the fix

    given = [answers(r) for r in rows]
    answered = sum(1 for a in given if a)
    fields = Counter(str(r["field"]) for r in rows if r.get("field") is not None)
    out = {"answered": answered, "no_answer": sum(1 for a in given if a == []),
           "unlabelled": sum(1 for a in given if a is None),
           "contexts": len({r.get(columns.get("context", "context")) for r in rows}),
           "question_chars": _percentiles([len(str(r.get(columns.get("question", "question")) or "")) for r in rows])}
    if fields:
        out["fields"] = dict(fields.most_common())
    return out
