"""Converters into tasktune's extractive QA rows {id, question, context, answers: [{text, start}]}.

- `squad`: SQuAD v1.1 / v2.0 JSON (CMRC 2018 has the same shape): data[].paragraphs[].qas[].
  v2.0's `is_impossible` questions get `answers: []`.
- `fields`: field records {id, text, fields: {alias: "...", title: null}} plus a question per
  field (YAML: {alias: "别名是什么？"}). A value found in the text is a positive; a null value is a
  negative; a value that is not in the text verbatim cannot be a span, so it is left out and listed
  in `<out>.left_out.jsonl` (never dropped silently). More negatives come from pairing: asking a
  record for a field it does not list. `negative_ratio` (e.g. 0.12) sets the share of negatives in
  the output: null negatives first, then pairs, sampled with `seed`.

The output is written atomically with a manifest `<out>.convert.json` (inputs' sha256, settings,
counts); converting the same inputs with the same settings again reuses the file.

Example:
    convert("squad", "cmrc2018_trial.json", "qa.jsonl")
    convert("fields", "reports.jsonl", "qa.jsonl", questions="fields.yaml", negative_ratio=0.12)
"""

from __future__ import annotations

import json
import logging
import random
from pathlib import Path

from tasktune.atomic import write_json, write_jsonl
from tasktune.errors import UserError
from tasktune.fingerprint import sha256_files

log = logging.getLogger("tasktune")
SOURCES = ("squad", "fields", "qa-retrieval", "c3", "kaggle-mc", "mug")


def convert(source: str, input: str, output: str, questions: str | None = None, negative_ratio: float | None = None,
            negatives: str = "both", seed: int = 0, overwrite: bool = False, chunk_chars: int | None = None,
            overlap: int = 0, task: str | None = None, max_chars: int = 3000) -> dict:
    """Convert `input` into QA rows at `output`; returns the counts (also in `<output>.convert.json`).

    `qa-retrieval` writes a retrieval set (corpus + queries) into the folder `output` instead
    (data/qa_retrieval.py). `mug` writes instruction rows of one MUG `task` (data/mug_convert.py).
    """
    if source not in SOURCES:
        raise UserError(f"unknown --from '{source}'; available: {', '.join(SOURCES)}")
    if not Path(input).is_file():
        raise UserError(f"input file '{input}' not found; check the path")
    if source == "qa-retrieval":
        from tasktune.data.qa_retrieval import qa_to_retrieval

        return qa_to_retrieval(input, output, chunk_chars, overlap, overwrite)
    if source == "fields" and not questions:
        raise UserError("--from fields needs --questions FILE (YAML: field -> question, e.g. alias: 别名是什么？)")
    if negative_ratio is not None and not 0 <= negative_ratio < 1:
        raise UserError(f"--negative-ratio {negative_ratio}: give the share of negatives, from 0 to below 1, e.g. 0.12")
    inputs = [input] + ([questions] if questions else [])
    settings = {"from": source, "negative_ratio": negative_ratio, "negatives": negatives, "seed": seed,
                "inputs_sha256": sha256_files(inputs), **({"task": task, "max_chars": max_chars} if source == "mug" else {})}
    manifest = Path(f"{output}.convert.json")
    if Path(output).exists() and not overwrite:
        old = json.loads(manifest.read_text(encoding="utf-8")) if manifest.is_file() else {}
        if old.get("settings") == settings:
            log.info("%s is up to date with %s (same inputs and settings); reusing it", output, input)
            return old["counts"]
        raise UserError(f"'{output}' exists and was not converted from these inputs and settings; "
                        "pass --overwrite to replace it, or choose another output path")
    if source == "squad":
        rows, counts, problems = from_squad(input)
    elif source in ("c3", "kaggle-mc"):
        from tasktune.data.mc_convert import mc_rows

        rows, counts, problems = mc_rows(source, input)
    elif source == "mug":
        from tasktune.data.mug_convert import mug_rows

        rows, counts, problems = mug_rows(input, task, max_chars)
        if counts["cut"]:
            log.warning("%d of %d rows were longer than --max-chars %d and were cut (%d characters in all)",
                        counts["cut"], counts["rows"], max_chars, counts["chars_cut"])
        if task in ("segmentation", "action"):
            log.info("the responses list sentence ids: set task.id_metrics=true to score them by precision, "
                     "recall and F1 as well")
    else:
        rows, counts, problems = from_fields(input, _read_questions(questions), negative_ratio, negatives, seed)
    if not rows:
        raise UserError(f"{input}: no rows came out; check that it is {source} data")
    write_jsonl(output, rows)
    side = Path(f"{output}.left_out.jsonl")
    if problems:
        write_jsonl(side, problems)
        log.warning("%d item(s) could not become rows (an answer not in the text or the choices, an empty "
                    "question, duplicate choices) "
                    "and were left out; each is listed with why in %s (first: %s)", len(problems), side,
                    json.dumps(problems[0], ensure_ascii=False)[:160])
    elif side.exists():
        side.unlink()
    write_json(manifest, {"settings": settings, "counts": counts, "output": str(output)})
    log.info("%s -> %s: %s", input, output, ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def from_squad(path: str) -> tuple[list[dict], dict, list[dict]]:
    """Rows, counts and problems of a SQuAD-shaped JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))["data"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: not SQuAD-shaped JSON (expected {{\"data\": [{{\"paragraphs\": [...]}}]}})") from None
    rows, problems = [], []
    counts = {"articles": len(data), "paragraphs": 0, "questions": 0, "has_answer": 0, "no_answer": 0,
              "starts_repaired": 0, "answers_not_found": 0, "empty_questions": 0}
    for a_i, article in enumerate(data):
        for p_i, para in enumerate(article.get("paragraphs", [])):
            counts["paragraphs"] += 1
            context = para["context"]
            for qa in para.get("qas", []):
                counts["questions"] += 1
                if not str(qa.get("question") or "").strip():
                    counts["empty_questions"] += 1  # nothing to ask: listed, not trained on
                    problems.append({"id": qa.get("id"), "why": "empty question"})
                    continue
                answers = []
                for ans in ([] if qa.get("is_impossible") else qa.get("answers", [])):
                    start = locate_answer(context, ans["text"], ans.get("answer_start"))
                    if start is None:
                        counts["answers_not_found"] += 1
                        problems.append({"id": qa.get("id"), "answer": ans["text"], "why": "not in the context"})
                        continue
                    counts["starts_repaired"] += start != ans.get("answer_start")
                    answers.append({"text": ans["text"], "start": start})
                if not answers and qa.get("answers") and not qa.get("is_impossible"):
                    continue  # every answer was unusable: listed in problems, not turned into a negative
                counts["has_answer" if answers else "no_answer"] += 1
                rows.append({"id": str(qa.get("id", f"{a_i}-{p_i}-{len(rows)}")), "question": qa["question"],
                             "context": context, "answers": answers, "record_id": f"{a_i}-{p_i}"})
    return rows, counts, problems


def answers_cell(value):
    """A row's `answers` as given: a list, or JSON text of one (CSV cells; blank = []). Raises ValueError
    on text that is not JSON. Example: answers_cell('[{"text": "Oslo", "start": 3}]') -> [{...}]"""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []  # json.JSONDecodeError is a ValueError
    return value


def locate_answer(context: str, text: str, start) -> int | None:
    """`start` when the text is there; else the occurrence nearest to it (off-by-one offsets are
    common in public data, e.g. five CMRC 2018 trial questions); None when the text is absent."""
    if isinstance(start, int) and context[start:start + len(text)] == text:
        return start
    hits, pos = [], context.find(text)
    while pos != -1:
        hits.append(pos)
        pos = context.find(text, pos + 1)
    if not hits:
        return None
    return min(hits, key=lambda h: abs(h - start)) if isinstance(start, int) else hits[0]


def _read_questions(path: str) -> dict[str, str]:
    import yaml

    try:
        questions = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise UserError(f"questions file '{path}' not found; check the path") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: invalid YAML ({exc}); write one `field: question` per line") from None
    if not isinstance(questions, dict) or not all(isinstance(q, str) and q.strip() for q in questions.values()):
        raise UserError(f"{path}: expected a mapping field -> question text, e.g. `alias: 别名是什么？`")
    return {str(k): v for k, v in questions.items()}


def from_fields(path: str, questions: dict[str, str], negative_ratio: float | None, negatives: str,
                seed: int) -> tuple[list[dict], dict, list[dict]]:
    """QA rows from field records (see the module docstring); `negatives`: null, paired or both."""
    from tasktune.data.readers import read_table

    if negatives not in ("null", "paired", "both"):
        raise UserError(f"--negatives '{negatives}': use null, paired or both")
    table = read_table(path)
    positives, nulls, pairs, problems = [], [], [], []
    for i, rec in enumerate(table.rows):
        text, fields = rec.get("text"), rec.get("fields")
        if not isinstance(text, str) or not isinstance(fields, dict):
            raise UserError(f"{table.where(i)}: a field record needs `text` (string) and `fields` (object)")
        rid = str(rec.get("id", f"{Path(path).name}#{table.lines[i]}"))
        for field, question in questions.items():
            row = {"id": f"{rid}:{field}", "question": question, "context": text, "answers": [],
                   "field": field, "record_id": rid}
            if field not in fields:
                pairs.append(row)
            elif fields[field] is None or fields[field] == "" or fields[field] == []:
                nulls.append(row)
            else:
                row["answers"] = _find_values(text, fields[field], rid, field, problems)
                if row["answers"]:
                    positives.append(row)
    kept_null, kept_pairs = _choose_negatives(len(positives), nulls, pairs, negative_ratio, negatives, seed)
    rows = sorted(positives + kept_null + kept_pairs, key=lambda r: (r["record_id"], r["field"]))
    counts = {"records": len(table.rows), "samples": len(rows), "positives": len(positives),
              "negatives": len(kept_null) + len(kept_pairs), "negatives_null": len(kept_null),
              "negatives_paired": len(kept_pairs), "not_found_in_text": len(problems),
              "negatives_left_out": len(nulls) + len(pairs) - len(kept_null) - len(kept_pairs)}
    return rows, counts, problems


def _find_values(text: str, value, rid: str, field: str, problems: list[dict]) -> list[dict]:
    """Answers for each value (a string, number or list of them) found verbatim in the text."""
    answers = []
    for v in value if isinstance(value, list) else [value]:
        v = str(v)
        start = text.find(v)
        if start == -1:
            problems.append({"record_id": rid, "field": field, "value": v, "why": "not in the text verbatim"})
        else:
            answers.append({"text": v, "start": start})
    return answers


def _choose_negatives(n_pos: int, nulls: list, pairs: list, ratio: float | None, negatives: str, seed: int):
    """Null negatives and pairs to keep: all nulls without a ratio; else enough for `ratio` of the output."""
    use_null = nulls if negatives in ("null", "both") else []
    use_pairs = pairs if negatives in ("paired", "both") else []
    if ratio is None:
        return use_null, ([] if negatives == "both" else use_pairs)
    want = round(ratio * n_pos / (1 - ratio)) if ratio else 0
    rng = random.Random(seed)
    kept_null = rng.sample(use_null, min(want, len(use_null)))
    kept_pairs = rng.sample(use_pairs, min(want - len(kept_null), len(use_pairs)))
    if len(kept_null) + len(kept_pairs) < want:
        log.warning("asked for %.0f%% negatives but only %d exist (%d positives); keeping them all",
                    100 * ratio, len(kept_null) + len(kept_pairs), n_pos)
    return kept_null, kept_pairs
