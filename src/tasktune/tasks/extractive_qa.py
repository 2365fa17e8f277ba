"""Extractive question answering with "no answer": the answer is a span of the context, or nothing.

Data contract: required `question`, `context`, `answers` (a list of {text, start}; start is the
character offset in context; an empty list means the context holds no answer); optional `id`,
`field` (for field extraction: which field the question asks for; gives per-field metrics and
thresholds) and `record_id` (rows of one record stay on one side of the train/eval split).
Example row: {"id": "r1:alias", "question": "别名是什么？", "context": "张三，别名老张，...",
              "answers": [{"text": "老张", "start": 5}], "field": "alias", "record_id": "r1"}
`tasktune data convert --from squad|fields` writes such rows from SQuAD/CMRC JSON or field records.

Model: any backbone with a span head (`models/span_head.py`); long contexts are cut into
overlapping windows (`tasks/qa_spans.py`). A row is answered when its best span's score beats
the null score by more than the null threshold (`task.null_threshold`, per field
`task.field_thresholds`, fitted by `tasktune eval RUN --tune-null-threshold`).

Predict takes question/context rows, or records {id, text} when the run knows its fields'
questions: then it returns one object per record with every field's value (or null), score
and character offsets.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from tasktune.config import TaskSettings
from tasktune.data.convert import answers_cell, locate_answer
from tasktune.errors import UserError
from tasktune.metrics.qa import detect_language, qa_scores, score_rows, summarize
from tasktune.tasks import qa_spans
from tasktune.tasks.protocol import RowError

log = logging.getLogger("tasktune")

MIN_ROWS_PER_FIELD_THRESHOLD = 20  # fewer eval rows than this: a field keeps the global threshold
MODEL_INPUTS = ("input_ids", "attention_mask", "context_mask", "token_type_ids")


class ExtractiveQASettings(TaskSettings):
    name: Literal["extractive_qa"] = "extractive_qa"
    doc_stride: int = Field(64, gt=0, description="Tokens shared by consecutive windows of a long context.")
    span_features: Literal["token", "token_next", "bilinear"] = Field(
        "token", description="How spans are scored: start + end from each position's own hidden state (token), from "
        "it and the next token's (token_next: a causal model's start token then sees one token of the answer), or "
        "token plus a low-rank start-end term (bilinear: the end is chosen knowing its start). Saved in the model's "
        "config.")
    span_length_prior: bool = Field(
        False, description="Add a learned score of each span's length (end - start) to its score, so the model can "
        "learn how long answers run (hidden states of rotary models carry no position). Saved in the model's config.")
    max_answer_tokens: int = Field(64, gt=0, description="Longest answer span considered, in tokens.")
    n_best: int = Field(5, gt=0, description="Candidate answers kept per question in predictions.")
    null_threshold: float = Field(
        0.0, description="Answer only when best span score - null score > this; "
        "`tasktune eval RUN --tune-null-threshold` fits it.")
    fit_threshold_after_training: bool = Field(
        True, description="At the end of training, fit the null threshold(s) on the eval split's predictions (rows "
        "not trained on) and store them in best/ for predict; eval/eval/metrics.json keeps task.null_threshold's "
        "scores (scores on the rows a threshold was fitted on are optimistic).")
    field_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Null threshold per field, e.g. {title: 1.5}.")
    metric_language: Literal["auto", "zh", "en"] = Field(
        "auto", description="EM/F1 rules: zh = CMRC 2018 (characters), en = SQuAD (words), "
        "auto = zh when the contexts are mostly Chinese.")
    questions: dict[str, str] | None = Field(
        None, description="Field -> question for predicting on records; default: the training data's questions "
        "per field.")
    short_field_chars: int = Field(4, gt=0, description="Answers of at most this many characters are 'short'.")
    short_field_weight: float = Field(
        1.0, ge=1.0, description="Loss weight of samples with a short answer (1 = off).")
    short_field_boost: float = Field(
        0.0, ge=0.0, description="Adds boost / answer characters to each answer's loss weight (0 = off).")
    null_margin: float = Field(
        0.0, ge=0.0, description="Margin by which the null score should beat every span on a no-answer sample, "
        "and lose to the gold span on an answered one.")
    null_margin_weight: float = Field(
        0.0, ge=0.0, description="Weight of that margin loss (0 = off). Misses answers: lower the margin; false "
        "answers: raise it.")

    def check(self, cfg) -> str | None:
        if cfg.train.packing:
            return "train.packing does not apply to extractive_qa (windows are already full-length)"
        if self.doc_stride >= cfg.model.max_length // 2:
            return (f"task.doc_stride {self.doc_stride} must be below half of model.max_length "
                    f"{cfg.model.max_length} (windows hold the question too); e.g. "
                    f"task.doc_stride={max(1, cfg.model.max_length // 4)}")
        return None


class ExtractiveQA:
    """Extractive QA with no-answer: answer spans or null, for documents and field extraction."""

    name = "extractive_qa"
    Settings = ExtractiveQASettings
    required_columns = ["question", "context", "answers"]
    optional_columns = ["id", "field", "record_id"]
    label_columns = ["answers"]
    summary_metrics = ("exact", "f1")
    lower_is_better = ()
    metric_names = ("exact", "f1", "has_answer_exact", "has_answer_f1", "no_answer_exact", "no_answer_f1",
                    "no_answer_precision", "no_answer_recall")

    # --- data ---------------------------------------------------------------------------------
    def parse_row(self, row, cfg, state, labelled=True):
        """The row with `text` read as `context` and answers as a list with exact character starts."""
        row = dict(row)
        if row.get("context") is None and row.get("text") is not None:
            row["context"] = row.pop("text")
        context = row.get("context")
        if not isinstance(context, str) or not context.strip():
            raise RowError("empty or missing context; fill it in or remove the row")
        question = row.get("question")
        if not (isinstance(question, str) and question.strip()):
            if labelled or not (state or {}).get("fields"):
                raise RowError("empty or missing question; every row needs one (or train on field data, whose runs "
                               "know each field's question)")
        if not labelled and row.get("answers") is None:
            return row
        return {**row, "answers": _parsed_answers(row)}

    def split_keys(self, row):
        return None, row.get("record_id") or row.get("context")

    def setup(self, train_rows, cfg):
        counts = Counter(bool(r["answers"]) for r in train_rows)
        fields = cfg.task.questions or _field_questions(train_rows)
        language = cfg.task.metric_language
        if language == "auto":
            language = detect_language([r["context"] for r in train_rows])
        return {"language": language, "fields": fields, "null_threshold": cfg.task.null_threshold,
                "field_thresholds": dict(cfg.task.field_thresholds),
                "counts": {"has_answer": counts[True], "no_answer": counts[False]}}

    def state_from_model(self, path, cfg, rows):
        language = cfg.task.metric_language
        if language == "auto":
            language = detect_language([r["context"] for r in rows]) if rows else "en"
        return {"language": language, "fields": cfg.task.questions or {},
                "null_threshold": cfg.task.null_threshold, "field_thresholds": dict(cfg.task.field_thresholds),
                "counts": {}}

    def gold(self, row):
        return [a["text"] for a in row["answers"]]

    def input_columns(self, state):
        return [], ["id", "question", "context", "text", "field", "answers"]

    def text_row(self, text, extra):
        unknown = set(extra) - {"question"}
        if unknown:
            raise UserError(f"predict --{unknown.pop()} does not apply to extractive_qa runs")
        return {"id": "text", "context": text, **({"question": extra["question"]} if extra.get("question") else {})}

    def inspect(self, rows, tokenizer):
        """Answered / no-answer counts, fields, contexts, question lengths; with a tokenizer, tokens per pair."""
        return qa_inspect(rows, tokenizer)

    # --- model and training -------------------------------------------------------------------
    def head_modules(self, cfg):
        from tasktune.models.span_head import HEADS

        return HEADS

    def build_model(self, path, cfg, state, for_training=True):
        from tasktune.models.heads import load_with_head
        from tasktune.models.loading import load_tokenizer
        from tasktune.models.span_head import HEADS, span_model_class

        tok = load_tokenizer(path, "right")
        model = load_with_head(path, cfg, span_model_class, {"span_features": cfg.task.span_features,
                                                             "span_length_prior": cfg.task.span_length_prior},
                               HEADS, for_training)
        return model, tok

    def prepare(self, rows, tokenizer, cfg, state):
        labelled = all(r.get("answers") is not None for r in rows)
        feats = qa_spans.make_features(tokenizer, rows, cfg.model.max_length, cfg.task.doc_stride, labelled)
        if labelled:
            _log_alignment(rows, feats)
        return feats

    def collator(self, tokenizer, cfg, state):
        return qa_spans.SpanCollator(tokenizer.pad_token_id)

    def compute_loss(self, model, batch, cfg, state):
        logits = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits
        return span_loss(logits, batch["labels"], cfg.task, cfg.train.label_smoothing)

    # --- inference and metrics ----------------------------------------------------------------
    def predict(self, model, tokenizer, rows, cfg, state, batch_size=32):
        from tasktune.engine.inference import batched_outputs

        qa_rows, records = _expand_records(rows, state)
        feats = qa_spans.make_features(tokenizer, qa_rows, cfg.model.max_length, cfg.task.doc_stride, labelled=False)

        def forward(m, batch):
            logits = m(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits
            return qa_spans.top_spans(logits, cfg.task.max_answer_tokens, cfg.task.n_best)

        outputs = batched_outputs(model, feats, self.collator(tokenizer, cfg, state), forward, batch_size,
                                  bf16=cfg.train.bf16)
        decoded = qa_spans.decode(qa_rows, feats, outputs, _thresholds(state), cfg.task.n_best)
        preds = [_prediction(r, d) for r, d in zip(qa_rows, decoded)]
        return _collect_records(preds, qa_rows, records) if records else preds

    def row_scores(self, predictions, state):
        return score_rows([p["answer"] for p in predictions], [p["gold"] for p in predictions], state["language"],
                          [p.get("field") for p in predictions])

    def aggregate(self, scores, state):
        return {k: v for k, v in summarize(scores).items() if k in self.metric_names}

    def metrics(self, predictions, state):
        return summarize(self.row_scores(predictions, state))

    def tune(self, predictions, state):
        """Global null threshold maximising F1 on labelled predictions, and one per field with enough rows."""
        groups: dict = {None: list(range(len(predictions)))}
        for i, p in enumerate(predictions):
            if p.get("field") is not None:
                groups.setdefault(p["field"], []).append(i)
        fitted, report = {}, {}
        inputs = _threshold_inputs(predictions, state["language"])  # scored once, sliced per field
        for name, idx in groups.items():
            if name is not None and len(idx) < MIN_ROWS_PER_FIELD_THRESHOLD:
                continue
            fitted[name], f1 = qa_spans.fit_threshold(*([column[i] for i in idx] for column in inputs))
            report[name or "all"] = {"threshold": round(fitted[name], 4), "f1": round(f1, 3)}
        new_state = {**state, "null_threshold": round(fitted.pop(None), 4),
                     "field_thresholds": {f: round(t, 4) for f, t in fitted.items()}}
        thresholds = _thresholds(new_state)
        redecided = [{**p, **qa_spans.decide(dict(p), thresholds(p))} for p in predictions]
        report["null_threshold"] = {"before": state.get("null_threshold"), "after": new_state["null_threshold"]}
        return new_state, redecided, report

    def baselines(self, rows, state):
        return {"no_answer": [{"id": r.get("id"), "question": r.get("question"), "answer": None,
                               **({"field": r["field"]} if r.get("field") is not None else {})} for r in rows]}

    def after_training(self, model, tokenizer, splits, cfg, run_dir, metrics):
        """task.fit_threshold_after_training: fit on the eval split's predictions, store in best/tasktune.json."""
        from tasktune.atomic import write_json

        preds_path = Path(run_dir) / "eval" / "eval" / "predictions.jsonl"
        if not (cfg.task.fit_threshold_after_training and splits.eval and preds_path.is_file()):
            return
        preds = [json.loads(x) for x in preds_path.read_text(encoding="utf-8").splitlines()]
        new_state, _, report = self.tune(preds, splits.state)
        meta_path = Path(run_dir) / "best" / "tasktune.json"
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        meta["state"] = new_state
        meta["thresholds_fitted_on"] = {"split": "eval", "rows": len(preds), "ids": [p.get("id") for p in preds],
                                        "report": report}
        write_json(meta_path, meta)
        log.info("null threshold fitted on the %d eval rows (not trained on) and stored in %s for predict: %s -> %s "
                 "(F1 there %.2f; the eval metrics above use %s; refit with eval --tune-null-threshold)", len(preds),
                 meta_path, report["null_threshold"]["before"], report["null_threshold"]["after"],
                 report["all"]["f1"], report["null_threshold"]["before"])

    def zero_shot(self, path, rows, cfg, state, batch_size=16):
        """A decoder base model prompted to copy the answer out (an untrained span head says nothing);
        {} for encoders."""
        from tasktune.tasks.qa_generate import generate_answers, is_causal_lm

        if not is_causal_lm(path):
            return {}
        return {"zero_shot": generate_answers(path, rows, state["language"], min(batch_size, 8),
                                              min(cfg.task.max_answer_tokens, 48), bf16=cfg.train.bf16)}


def _log_alignment(rows: list[dict], feats: list[dict]) -> None:
    """Say how many answers are not whole tokens of this tokenizer: such answers can only be
    predicted with their tokens' extra characters, which caps exact match."""
    import logging

    exact = set()
    for f in feats:
        s, e = f["labels"][0] - 1, f["labels"][1] - 1
        if s >= 0:
            row = rows[f["_row"]]
            if row["context"][f["_offsets"][s][0]:f["_offsets"][e][1]].strip() == row["answers"][0]["text"].strip():
                exact.add(f["_row"])
    answered = sum(1 for r in rows if r["answers"])
    if answered:
        logging.getLogger("tasktune").info(
            "%d windows from %d rows; %d of %d answers (%.1f%%) fall on token boundaries (the rest cap exact "
            "match: the model can only return whole tokens)", len(feats), len(rows), len(exact), answered,
            100 * len(exact) / answered)


def _parsed_answers(row: dict) -> list[dict]:
    """The row's answers as [{text, start}] with starts that point at the text; RowError otherwise."""
    try:
        answers = answers_cell(row.get("answers"))
    except ValueError:
        raise RowError("answers is not valid JSON; write a list like [{\"text\": \"...\", \"start\": 0}] or []") from None
    if not isinstance(answers, list):
        raise RowError("answers must be a list of {text, start} ([] = no answer)")
    fixed = []
    for a in answers:
        if not isinstance(a, dict) or not isinstance(a.get("text"), str) or not a["text"]:
            raise RowError(f"answer {a!r} needs a non-empty text")
        start = locate_answer(row["context"], a["text"], a.get("start", a.get("answer_start")))
        if start is None:
            raise RowError(f"answer '{a['text'][:40]}' does not occur in the context; fix it or move the row to "
                           "no-answer ([])")
        fixed.append({"text": a["text"], "start": start})
    return fixed


def _field_questions(rows: list[dict]) -> dict[str, str]:
    """The most common question of each field in training rows ({} without a field column)."""
    by_field: dict[str, Counter] = {}
    for r in rows:
        if r.get("field") is not None:
            by_field.setdefault(str(r["field"]), Counter())[r["question"]] += 1
    return {f: c.most_common(1)[0][0] for f, c in sorted(by_field.items())}


def _thresholds(state: dict):
    base, per_field = state.get("null_threshold", 0.0), state.get("field_thresholds") or {}
    return lambda row: per_field.get(row.get("field"), base)


def _threshold_inputs(preds, language):
    golds = [p["gold"] for p in preds]
    margins = [p["score"] for p in preds]
    answered = [qa_scores(p["candidates"][0]["text"], g, language)["f1"] if p["candidates"] else 0.0
                for p, g in zip(preds, golds)]
    null = [qa_scores(None, g, language)["f1"] for g in golds]
    return margins, answered, null


def _expand_records(rows: list[dict], state: dict) -> tuple[list[dict], list[dict]]:
    """Question rows as they are; a record without a question becomes one row per known field."""
    qa_rows, records = [], []
    for r in rows:
        if r.get("question"):
            qa_rows.append(r)
            continue
        records.append(r)
        for field, question in state["fields"].items():
            qa_rows.append({"id": r.get("id"), "question": question, "context": r["context"], "field": field,
                            "_record": len(records) - 1})
    return qa_rows, records


def _prediction(row: dict, d: dict) -> dict:
    out = {"id": row.get("id"), "question": row["question"], "answer": d["answer"], "start": d["start"],
           "end": d["end"], "score": d["score"], "null_score": d["null_score"], "candidates": d["candidates"]}
    if row.get("field") is not None:
        out["field"] = row["field"]
    return out


def _collect_records(preds: list[dict], qa_rows: list[dict], records: list[dict]) -> list[dict]:
    """One object per record: {id, fields: {field: {value, score, start, end}}}; question rows as they are."""
    out, by_record = [], [{} for _ in records]
    for p, r in zip(preds, qa_rows):
        if "_record" in r:
            by_record[r["_record"]][r["field"]] = {"value": p["answer"], "score": p["score"],
                                                   "start": p["start"], "end": p["end"]}
        else:
            out.append(p)
    return out + [{"id": rec.get("id"), "fields": f} for rec, f in zip(records, by_record)]


def span_loss(logits, labels, task_cfg, label_smoothing: float):
    """Sum over windows of the cross-entropy of start and end over "null or a context token".

    `logits` (windows, 1 + length, 2), `labels` (windows, 3): start, end, answer characters. Logits with
    more channels carry a pair term (bilinear, length prior: `models/span_head`): the end's cross-entropy then uses
    end + pair(gold start, end), teacher-forced as an end head conditioned on its start.
    Label smoothing spreads its mass over the valid positions only (Trainer's label_smoothing_factor
    would put it on masked positions). Per-sample weights: `short_field_weight` for answers of at
    most `short_field_chars` characters, plus `short_field_boost` / answer characters. With
    `null_margin_weight` > 0 a hinge loss wants null - best span >= null_margin on no-answer samples
    and gold span - null >= null_margin on answered ones.
    """
    import torch

    logits = logits.float()
    target = labels[:, :2]
    if logits.shape[-1] > 2:  # a pair term: the end is scored knowing the gold start
        logits = torch.stack([logits[..., 0], logits[..., 1] + pair_scores(logits, target[:, 0])], dim=-1)
    valid = logits[..., 0] > torch.finfo(torch.float32).min / 2        # (batch, 1 + length)
    logp = torch.log_softmax(logits, dim=1)
    nll = -logp.gather(1, target.unsqueeze(1)).squeeze(1)            # (batch, 2): start, end
    smooth = -(logp * valid.unsqueeze(-1)).sum(1) / valid.sum(1, keepdim=True)
    per = ((1 - label_smoothing) * nll + label_smoothing * smooth).mean(1)
    chars = labels[:, 2].float()
    weight = torch.ones_like(per)
    short = (chars > 0) & (chars <= task_cfg.short_field_chars)
    weight = torch.where(short, weight * task_cfg.short_field_weight, weight)
    weight = weight + torch.where(chars > 0, task_cfg.short_field_boost / chars.clamp(min=1), 0.0)
    total = weight * per
    if task_cfg.null_margin_weight > 0:
        total = total + task_cfg.null_margin_weight * _margin(logits, valid, target, task_cfg.null_margin)
    return total.sum()


def pair_scores(logits, starts):
    """Bilinear term u(h_s) . v(h_e) for each window's start s = `starts` and every e: (windows, 1 + length).

    `logits` (windows, 1 + length, 2 + 2 * width) as `models/span_head` returns with a pair term (span_features
    bilinear, span_length_prior).
    """
    import torch

    u, v = qa_spans.pair_halves(logits)
    u = u[torch.arange(logits.shape[0], device=logits.device), starts]   # (windows, width)
    return torch.einsum("wr,wtr->wt", u, v)


def _margin(logits, valid, target, margin: float):
    import torch

    null = logits[:, 0, 0] + logits[:, 0, 1]
    tokens = logits[:, 1:].masked_fill(~valid[:, 1:].unsqueeze(-1), -1e4)
    best = tokens[..., 0].max(1).values + tokens[..., 1].max(1).values
    rows = torch.arange(logits.shape[0], device=logits.device)
    gold = logits[rows, target[:, 0], 0] + logits[rows, target[:, 1], 1]
    negative = target[:, 0] == 0
    return torch.where(negative, torch.relu(margin - (null - best)), torch.relu(margin - (gold - null)))


def qa_inspect(rows: list[dict], tokenizer=None) -> dict:
    """`data inspect`'s QA view: answered / no-answer / unlabelled counts, fields, distinct contexts,
    question lengths, and with a tokenizer the tokens of each question + context pair and the share
    that fits one window at common model.max_length settings."""
    from tasktune.data.inspect import percentiles

    def answers(r):
        try:
            return answers_cell(r.get("answers"))
        except ValueError:
            return None  # counted as unlabelled; training names the line and the fix

    given = [answers(r) for r in rows]
    fields = Counter(str(r["field"]) for r in rows if r.get("field") is not None)
    out = {"answered": sum(1 for a in given if a), "no_answer": sum(1 for a in given if a == []),
           "unlabelled": sum(1 for a in given if a is None), "contexts": len({r.get("context") for r in rows}),
           "question_chars": percentiles([len(str(r.get("question") or "")) for r in rows])}
    if fields:
        out["fields"] = dict(fields.most_common())
    if tokenizer is not None:
        lengths = []
        for start in range(0, len(rows), 512):
            chunk = rows[start:start + 512]
            lengths += [len(ids) for ids in tokenizer([str(r.get("question") or "") for r in chunk],
                                                      [str(r.get("context") or "") for r in chunk])["input_ids"]]
        out["pair_tokens"] = percentiles(lengths)
        out["one_window_share"] = {n: round(sum(x <= n for x in lengths) / len(lengths), 4) for n in (256, 384, 512)}
    return out
