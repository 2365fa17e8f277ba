"""Multiple-choice QA: pick the right option of 2 to N; scored by accuracy and MAP@3.

Data contract: required `question` and `options` (a list of 2+ distinct texts; the count may vary
per row); `answer` for labelled rows (the option's index, its letter, or its text); optional `id`
and `context` (a passage the question is about).
Example row: {"id": "c3-1", "context": "男：你好…", "question": "男的想做什么？",
              "options": ["买票", "退票", "换座位"], "answer": "退票"}
`tasktune data convert --from c3 | kaggle-mc` writes such rows.

Methods (`task.method`):
- label_scoring: a causal LM reads the context, question and lettered options, then scores each
  option's letter at the answer position (`task.scoring: letter`, one forward per row; averaging
  over `task.permutations` cyclic shifts of the options removes letter-position bias), or each
  option's own text after the question (`text`, length-normalised with `task.text_score: mean`, or
  `pmi`: minus the option's log-probability after the answer prefix alone, so an option that is likely
  whatever the question loses its head start).
  Untrained, it is the zero-shot baseline; trained, the loss is cross-entropy over the row's options.
- head: one score per (context + question, option) pair from a sequence-scoring head on any backbone
  (transformers has no multiple-choice head for Gemma/Llama); rows with 2, 3 and 4 options share a batch.
The context is cut to fit `model.max_length`; the question and options are never cut.
Predictions rank the options; `predict --submission F` writes `id,prediction` with the top 3 letters.
"""

from __future__ import annotations

import json
import random
from typing import Literal

from pydantic import Field

from tasktune.config import Section, TaskSettings
from tasktune.errors import UserError
from tasktune.metrics.ranking import average_precision_at
from tasktune.tasks import label_scoring as ls
from tasktune.tasks.protocol import RowError

LETTERS = "ABCDEFGHIJ"
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "logits_to_keep")
PREMISE = "premise_"  # text_score pmi: the prompt-side batch keys of the answer prefix alone, owning every option


class OpenBookSettings(Section):
    index: str = Field(..., description="An index folder built by `tasktune index build` (its model embeds the queries).")
    k: int = Field(3, gt=0, description="Passages retrieved per question.")
    with_options: bool = Field(False, description="Search with the question and its options, not the question alone.")
    separator: str = Field("\n", description="Between the retrieved passages (and after the row's own context).")


class MultipleChoiceSettings(TaskSettings):
    name: Literal["multiple_choice"] = "multiple_choice"
    method: Literal["label_scoring", "head"] = Field(
        "label_scoring", description="label_scoring: a causal LM scores each option's letter (or text); head: a "
        "scoring head on (question, option) pairs.")
    scoring: Literal["letter", "text"] = Field("letter", description="label_scoring: score the option letters at "
                                               "one position, or each option's text.")
    text_score: Literal["sum", "mean", "pmi"] = Field(
        "mean", description="scoring text: sum, mean per token (length-normalised), or pmi: the sum minus the "
        "option's log-probability after answer_prefix alone (how likely the option is whatever the question; "
        "removes the pull of short, common options).")
    permutations: int = Field(1, ge=1, description="Average letter scores over this many cyclic shifts of the "
                              "options (removes position bias); training uses the original order.")
    context_template: str = Field("{context}\n", description="How a row's context starts the prompt.")
    question_template: str = Field("{question}\n", description="How the question follows.")
    option_template: str = Field("{letter}. {option}\n", description="label_scoring letter / head: each option.")
    answer_prefix: str = Field("答案：", description="What ends the prompt before the answer letter or text "
                               "(e.g. 'Answer:' for English).")
    open_book: OpenBookSettings | None = Field(
        None, description="Retrieve passages for each question from an index and put them in its context "
        "(the source team's `context #### question`: set context_template to '{context} #### ').")

    def check(self, cfg) -> str | None:
        if cfg.train.packing:
            return "train.packing does not apply to multiple_choice"
        if self.text_score == "pmi" and self.scoring == "text" and not self.answer_prefix.strip():
            return ("task.text_score pmi scores each option after task.answer_prefix alone: "
                    "set a non-empty answer_prefix")
        if self.method == "label_scoring" and cfg.model.attention != "causal":
            return "task.method label_scoring reads next-token probabilities: it needs model.attention causal"
        return None


def _options(value) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("options is not a JSON list; write it like [\"first\", \"second\"]") from None
    if not isinstance(value, list) or len(value) < 2:
        raise RowError("options needs a list of at least 2 texts")
    options = [str(o).strip() for o in value]
    if any(not o for o in options):
        raise RowError("an option is empty; fill it in or remove it")
    if len(set(options)) < len(options):
        raise RowError(f"duplicate options {sorted(o for o in set(options) if options.count(o) > 1)}; options must differ")
    if len(options) > len(LETTERS):
        raise RowError(f"{len(options)} options: at most {len(LETTERS)} are supported")
    return options


def _answer_index(answer, options: list[str]) -> int:
    text = str(answer).strip()
    if text in options:
        return options.index(text)
    if len(text) == 1 and text.upper() in LETTERS[:len(options)]:
        return LETTERS.index(text.upper())
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(options):
        return int(text)
    raise RowError(f"answer '{text[:40]}' matches no option (give its index, letter or text)")


class MultipleChoice:
    """Multiple-choice QA by option scoring (letters or texts) or a pair-scoring head; accuracy and MAP@3."""

    name = "multiple_choice"
    Settings = MultipleChoiceSettings
    required_columns = ["question", "options", "answer"]
    optional_columns = ["id", "context"]
    label_columns = ["answer"]
    summary_metrics = ("accuracy", "map@3")
    metric_names = ("accuracy", "map@3")
    lower_is_better = ()

    # --- data ---------------------------------------------------------------------------------
    def parse_row(self, row, cfg, state, labelled=True):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise RowError("empty or missing question; fill it in or remove the row")
        options = _options(row.get("options"))
        out = {**row, "options": options, "context": row.get("context") or ""}
        if labelled or row.get("answer") not in (None, ""):
            out["answer"] = _answer_index(row.get("answer"), options)
        return out

    def split_keys(self, row):
        return row.get("answer"), None

    def setup(self, train_rows, cfg):
        from collections import Counter

        counts = Counter(len(r["options"]) for r in train_rows)
        return {"option_counts": {str(k): v for k, v in sorted(counts.items())}}

    def state_from_model(self, path, cfg, rows):
        return self.setup(rows, cfg)

    def gold(self, row):
        return LETTERS[row["answer"]]

    def input_columns(self, state):
        return ["question", "options"], ["id", "context", "answer"]

    # --- model and training -------------------------------------------------------------------
    def head_modules(self, cfg):
        return ["classifier", "score"] if cfg.task.method == "head" else []

    def build_model(self, path, cfg, state, for_training=True):
        if state.get("ensemble"):
            from tasktune.tasks.mc_ensemble import Members

            if for_training:
                raise UserError("an ensemble run is not trained; make it with `tasktune ensemble`")
            return Members(state["ensemble"]["members"]), None
        return ls.scorer_or_head(path, cfg, for_training, cfg.task.method == "label_scoring", num_labels=1)

    def prepare(self, rows, tokenizer, cfg, state, shift: int = 0):
        """Features of `rows` with the options cyclically shifted by `shift` (predict averages shifts)."""
        feats = []
        for r in rows:
            order = [(i + shift) % len(r["options"]) for i in range(len(r["options"]))]
            f = _features(tokenizer, r, [r["options"][i] for i in order], cfg)
            f["order"] = order  # shown position -> original option index
            if r.get("answer") is not None:
                f["labels"] = order.index(r["answer"])
            feats.append(f)
        return feats

    def collator(self, tokenizer, cfg, state):
        return OptionCollator(tokenizer, cfg)

    def _scores(self, model, batch, cfg):
        """(rows, max options) scores in shown order; absent options -inf."""
        t = cfg.task
        if t.method == "label_scoring" and t.scoring == "text":
            flat = ls.shared_prefix_logprobs(model, batch, "sum" if t.text_score == "pmi" else t.text_score)
            if t.text_score == "pmi":  # the same options after the premise prompt instead of each row's
                premise = {k[len(PREMISE):]: v for k, v in batch.items() if k.startswith(PREMISE)}
                flat = flat - ls.shared_prefix_logprobs(model, {**batch, **premise}, "sum")
        else:
            logits = model(**{k: v for k, v in batch.items() if k in MODEL_INPUTS}).logits
            if t.method != "head":  # the letters, all at the prompt's last position
                scores = ls.label_scores(logits, batch["cand_ids"], batch["cand_owner"], batch["cand_ids"].shape[0])
                return scores.masked_fill(~batch["option_mask"], float("-inf"))
            flat = logits[:, 0].float()
        import torch

        out = torch.full(batch["option_mask"].shape, float("-inf"), device=flat.device)
        out[batch["row_of"], batch["option_of"]] = flat
        return out

    def compute_loss(self, model, batch, cfg, state):
        import torch

        return torch.nn.functional.cross_entropy(self._scores(model, batch, cfg), batch["labels"], reduction="sum")

    # --- inference and metrics ----------------------------------------------------------------
    def before_training(self, model, tokenizer, splits, cfg, run_dir):
        """Open book: retrieve each training and eval question's passages once, before training."""
        from dataclasses import replace

        if cfg.task.open_book is None:
            return splits
        return replace(splits, train=open_book(splits.train, cfg), eval=open_book(splits.eval, cfg),
                       test=open_book(splits.test, cfg) if splits.test else splits.test)

    def predict(self, model, tokenizer, rows, cfg, state, batch_size=16):
        from tasktune.engine.inference import batched_outputs

        if state.get("ensemble"):
            return self._blend(model, rows, state["ensemble"]["weights"], batch_size)
        rows = open_book(rows, cfg)
        shifts = cfg.task.permutations if cfg.task.method == "label_scoring" and cfg.task.scoring == "letter" else 1
        total = [[0.0] * len(r["options"]) for r in rows]
        for shift in range(shifts):
            feats = self.prepare([{k: v for k, v in r.items() if k != "answer"} for r in rows], tokenizer, cfg,
                                 state, shift)
            probs = batched_outputs(model, feats, self.collator(tokenizer, cfg, state),
                                    lambda m, b: self._scores(m, b, cfg).softmax(-1), batch_size, bf16=cfg.train.bf16)
            for acc, f, p in zip(total, feats, probs):
                for shown, original in enumerate(f["order"]):
                    acc[original] += p[shown] / shifts
        return [_prediction(r, p) for r, p in zip(rows, total)]

    def _blend(self, members, rows, weights, batch_size):
        from tasktune.tasks.mc_ensemble import blend

        probs = [[[p["probs"][LETTERS[j]] for j in range(len(r["options"]))]
                  for p, r in zip(task.predict(model, tok, rows, cfg, state, batch_size), rows)]
                 for task, cfg, state, model, tok in members.members]
        return [_prediction(r, p) for r, p in zip(rows, blend(probs, weights))]

    def row_scores(self, predictions, state):
        return [{"correct": float(p["ranked"][0] == p["gold"]), "map@3": average_precision_at(p["ranked"], p["gold"]),
                 "options": len(p["ranked"])} for p in predictions]

    def aggregate(self, scores, state):
        n = max(len(scores), 1)
        return {"accuracy": sum(s["correct"] for s in scores) / n, "map@3": sum(s["map@3"] for s in scores) / n}

    def metrics(self, predictions, state):
        scores = self.row_scores(predictions, state)
        by_count: dict[str, list] = {}
        for s in scores:
            by_count.setdefault(str(s["options"]), []).append(s)
        return {**self.aggregate(scores, state), "rows": len(scores),
                "per_option_count": {k: {"rows": len(v), **self.aggregate(v, state)} for k, v in sorted(by_count.items())}}

    def baselines(self, rows, state):
        """Random: a seeded random ranking per row (its expected accuracy is the mean of 1 / options)."""
        rng = random.Random(0)
        out = []
        for r in rows:
            n = len(r["options"])
            out.append(_prediction(r, [rng.random() / n for _ in range(n)]))
        return {"random": out}

    def zero_shot(self, path, rows, cfg, state, batch_size=16):
        """Untrained label scoring with the base model and the same prompt; {} for method head."""
        if cfg.task.method != "label_scoring":
            return {}
        from tasktune.models.loading import to_device

        zcfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"name": path, "lora": None,
                                                                              "quantization": None})})
        model, tok = self.build_model(path, zcfg, state, for_training=False)
        return {"zero_shot": self.predict(to_device(model), tok, rows, zcfg, state, batch_size)}

    def write_submission(self, predictions, path):
        """`id,prediction` with the top 3 letters separated by spaces (the Kaggle LLM Science Exam format)."""
        from tasktune.atomic import write_text

        lines = ["id,prediction"] + [f"{p['id']},{' '.join(p['ranked'][:3])}" for p in predictions]
        write_text(path, "\n".join(lines) + "\n")


def _prediction(row: dict, probs: list[float]) -> dict:
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    out = {"id": row.get("id"), "question": row["question"], "ranked": [LETTERS[i] for i in order],
           "prediction": LETTERS[order[0]], "answer_text": row["options"][order[0]],
           "probs": {LETTERS[i]: round(p, 6) for i, p in enumerate(probs)}}
    if "retrieved_ids" in row:
        out["retrieved_ids"] = row["retrieved_ids"]
    return out


def open_book(rows: list[dict], cfg) -> list[dict]:
    """Rows with their retrieved passages after their own context and `retrieved_ids`; rows that have them
    already, or no task.open_book, come back as they are. The index's own model embeds the questions."""
    book = cfg.task.open_book
    todo = [r for r in rows if "retrieved_ids" not in r]
    if book is None or not todo:
        return rows
    from tasktune.tasks.retrieval import search_index

    queries = [r["question"] + (" " + " ".join(r["options"]) if book.with_options else "") for r in todo]
    found = iter(search_index(book.index, queries, book.k))
    out = []
    for r in rows:
        if "retrieved_ids" in r:
            out.append(r)
            continue
        hits = next(found)
        parts = ([r["context"]] if r.get("context") else []) + [h["text"] for h in hits]
        out.append({**r, "context": book.separator.join(parts), "retrieved_ids": [h["id"] for h in hits]})
    return out


def _features(tokenizer, row: dict, options: list[str], cfg) -> dict:
    """Token ids for one row in the shown option order: the prompt (context cut to fit) plus, by method,
    nothing (letters), each option's tokens (text), or one (prompt, option) pair per option (head)."""
    t = cfg.task
    # Only the context's own text is cut: the template around it (a separator like " #### ") is kept.
    before, _, after = t.context_template.partition("{context}")
    context = before + row["context"] if row.get("context") else ""
    question = (after if context else "") + t.question_template.format(question=row["question"])
    lettered = "".join(t.option_template.format(letter=LETTERS[i], option=o) for i, o in enumerate(options))
    if t.method == "head":
        return {"pairs": [_fit(tokenizer, context, question + t.option_template.format(letter=LETTERS[i], option=o),
                               cfg.model.max_length) for i, o in enumerate(options)], "n_options": len(options)}
    if t.scoring == "letter":
        return {"prompt_ids": _fit(tokenizer, context, question + lettered + t.answer_prefix, cfg.model.max_length - 1),
                "n_options": len(options)}
    option_ids = [tokenizer(o, add_special_tokens=False)["input_ids"] for o in options]
    reserve = max(len(x) for x in option_ids)
    return {"prompt_ids": _fit(tokenizer, context, question + t.answer_prefix, cfg.model.max_length - reserve),
            "option_ids": option_ids, "n_options": len(options)}


def _fit(tokenizer, context: str, rest: str, budget: int) -> list[int]:
    """The tokenizer's leading special tokens, `context` cut from its end, then `rest` whole, in `budget` tokens
    (over it only when `rest` alone is)."""
    start = tokenizer("", add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and start and start[-1] == tokenizer.eos_token_id:
        start = start[:-1]  # some tokenizers append EOS with the special tokens: never inside a prompt
    body = tokenizer(context, add_special_tokens=False)["input_ids"] if context else []
    tail = tokenizer(rest, add_special_tokens=False)["input_ids"]
    return start + body[:max(budget - len(start) - len(tail), 0)] + tail


class OptionCollator:
    """Batches of rows with different option counts: letter scoring (left-padded prompts, the letters'
    candidate table), text scoring (each row's prompt once, left-padded, and its options right-padded) or
    the head (a right-padded pair per (row, option)); `option_mask` marks each row's real options."""

    def __init__(self, tokenizer, cfg):
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.cfg = cfg
        self.premise = _fit(tokenizer, "", cfg.task.answer_prefix, 0)  # text_score pmi's prompt, never cut
        self.letters = ls.LabelScoringCollator(self.pad, ls.candidates(tokenizer, list(LETTERS), {c: c for c in LETTERS}))

    def __call__(self, feats: list[dict]) -> dict:
        import torch

        n = max(f["n_options"] for f in feats)
        t = self.cfg.task
        if t.method == "label_scoring" and t.scoring == "letter":
            batch = self.letters([{k: v for k, v in f.items() if k in ("prompt_ids", "labels")} for f in feats])
            batch["option_mask"] = torch.arange(len(LETTERS)).unsqueeze(0) < torch.tensor(
                [f["n_options"] for f in feats]).unsqueeze(1)
            return batch
        pairs = [(i, j) for i, f in enumerate(feats) for j in range(f["n_options"])]
        if t.method == "head":
            seqs = [feats[i]["pairs"][j] for i, j in pairs]
            width = max(len(s) for s in seqs)
            batch = {"input_ids": torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs]),
                     "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])}
        else:
            batch = self._text(feats, pairs)
        batch.update(row_of=torch.tensor([i for i, _ in pairs]), option_of=torch.tensor([j for _, j in pairs]),
                     option_mask=torch.arange(n).unsqueeze(0) < torch.tensor([f["n_options"] for f in feats]).unsqueeze(1),
                     loss_items=len(feats))
        if "labels" in feats[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in feats])
        return batch

    def _text(self, feats, pairs) -> dict:
        # Each row's prompt once, its options continuing it (ls.shared_prefix_logprobs).
        options = [feats[i]["option_ids"][j] for i, j in pairs]
        batch = ls.shared_prefix_batch([f["prompt_ids"] for f in feats], options, [i for i, _ in pairs], self.pad)
        if self.cfg.task.text_score == "pmi":  # one premise prompt owning every option (the options' tensors shared)
            import torch

            owner = torch.zeros(len(options), dtype=torch.long)
            premise = {**ls.left_padded([self.premise], self.pad), "prefix_owner": owner}
            batch.update({PREMISE + k: v for k, v in premise.items()})
        return batch
