"""Converters into multiple-choice rows {id, question, options, answer, context}.

- `c3`: the C3 reading-comprehension JSON, a list of [passage or dialogue lines, [{question, choice,
  answer}], id]; the answer is the choice's text; the lines become the context (one per line).
- `kaggle-mc`: the Kaggle LLM Science Exam CSV `id,prompt,A,B,C,D,E[,answer]` (answer a letter).
Items that cannot be rows (an answer matching no choice, fewer than 2 or duplicate choices) are
left out and listed with the reason, never dropped silently.

Example: mc_rows("c3", "c3-m-dev.json")   # (rows, counts, left_out)
"""

from __future__ import annotations

import json
from pathlib import Path

from tasktune.errors import UserError

LETTERS = "ABCDEFGHIJ"


def _problem(options: list[str], answer) -> str | None:
    if len(options) < 2:
        return "fewer than 2 choices"
    if len(set(options)) < len(options):
        return "duplicate choices"
    if answer is not None and answer not in options:
        return "the answer matches no choice"
    return None


def from_c3(path: str) -> tuple[list[dict], list[dict]]:
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}); C3 files are JSON lists") from None
    rows, left = [], []
    for n, item in enumerate(items):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[1], list)):
            raise UserError(f"{path} item {n + 1}: not [lines, questions, id]; is this C3 data?")
        lines, questions, doc = item
        for k, q in enumerate(questions):
            options, answer = [str(c).strip() for c in q.get("choice", [])], q.get("answer")
            answer = None if answer is None else str(answer).strip()
            problem = _problem(options, answer)
            rid = f"{doc}-{k}"
            if problem:
                left.append({"id": rid, "item": n + 1, "reason": problem})
                continue
            rows.append({"id": rid, "context": "\n".join(lines), "question": q["question"], "options": options,
                         **({"answer": answer} if answer is not None else {})})
    return rows, left


def from_kaggle(path: str) -> tuple[list[dict], list[dict]]:
    from tasktune.data.readers import read_table

    table = read_table(path)
    missing = [c for c in ("id", "prompt", "A", "B") if c not in table.columns]
    if missing:
        raise UserError(f"{path}: columns {missing} not found; the Kaggle format is id,prompt,A,B,C,D,E[,answer]")
    rows, left = [], []
    for i, r in enumerate(table.rows):
        options = [str(r[c]).strip() for c in LETTERS[:5] if r.get(c) not in (None, "")]
        answer = str(r["answer"]).strip().upper() if r.get("answer") not in (None, "") else None
        text = options[LETTERS.index(answer)] if answer and answer in LETTERS[:len(options)] else answer
        problem = _problem(options, text if answer else None)
        if problem:
            left.append({"id": str(r["id"]), "line": table.lines[i], "reason": problem})
            continue
        rows.append({"id": str(r["id"]), "question": r["prompt"], "options": options,
                     **({"answer": answer} if answer else {})})
    return rows, left


def mc_rows(source: str, path: str) -> tuple[list[dict], dict, list[dict]]:
    """(rows, counts, left-out items) of a C3 or Kaggle multiple-choice file."""
    rows, left = (from_c3 if source == "c3" else from_kaggle)(path)
    counts = {"rows": len(rows), "left_out": len(left),
              "options": {str(n): sum(1 for r in rows if len(r["options"]) == n)
                          for n in sorted({len(r["options"]) for r in rows})},
              "answered": sum(1 for r in rows if "answer" in r)}
    return rows, counts, left
