"""Generation metrics: ROUGE-1/2/L (F1), BLEU-4 and exact match of a generated text against a reference.

Chinese is scored on characters (no word segmenter is needed and the MUG/LLaMA-Factory figures
are character-based), English on words. `rouge-score` and `sacrebleu` do the counting; this file
only chooses the units. Scores are on a 0-100 scale, as generation papers report them.

Example:
    text_scores("项目进度汇报", "项目进度的汇报", "chars")
    # {"rouge-1": 92.3, "rouge-2": 72.7, "rouge-l": 92.3, "bleu-4": ..., "exact_match": 0.0}
"""

from __future__ import annotations

import re
from functools import lru_cache

METRICS = ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "exact_match")
_SPACE = re.compile(r"\s+")


def units(texts: list[str]) -> str:
    """'chars' when CJK characters dominate `texts`, else 'words'."""
    joined = "".join(texts)
    cjk = sum(1 for ch in joined if "\u4e00" <= ch <= "\u9fff")
    return "chars" if cjk > 0.3 * max(1, len(_SPACE.sub("", joined))) else "words"


def _tokens(text: str, unit: str) -> list[str]:
    if unit == "chars":
        return [ch for ch in text if not ch.isspace()]
    return re.findall(r"\w+", text.lower())


class _Tokenizer:
    """rouge-score's tokenizer interface over tasktune's units (its default drops every non-Latin character)."""

    def __init__(self, unit: str):
        self.unit = unit

    def tokenize(self, text: str) -> list[str]:
        return _tokens(text, self.unit)


@lru_cache(maxsize=2)
def _scorer(unit: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=_Tokenizer(unit))


def text_scores(prediction: str | None, references: str | list[str], unit: str) -> dict[str, float]:
    """The five metrics of one generation (0-100) against one reference or several (MUG titles have one per
    annotator): each ROUGE is the best over the references, BLEU counts n-grams against all of them
    (sacrebleu's multi-reference BLEU), exact match is a match with any."""
    from sacrebleu.metrics import BLEU

    refs = [references] if isinstance(references, str) else list(references)
    pred = prediction or ""
    rouges = [_scorer(unit).score(ref, pred) for ref in refs]
    best = {k: 100 * max(r[k].fmeasure for r in rouges) for k in ("rouge1", "rouge2", "rougeL")}
    # BLEU on the same units, joined by spaces, so sacrebleu's own tokenizer changes nothing.
    bleu = BLEU(tokenize="none", effective_order=True).sentence_score(
        " ".join(_tokens(pred, unit)), [" ".join(_tokens(ref, unit)) for ref in refs]).score if pred.strip() else 0.0
    same = any(_SPACE.sub(" ", pred.strip()) == _SPACE.sub(" ", ref.strip()) for ref in refs)
    return {"rouge-1": best["rouge1"], "rouge-2": best["rouge2"], "rouge-l": best["rougeL"], "bleu-4": bleu,
            "exact_match": 100.0 * same}


ID_METRICS = ("id_precision", "id_recall", "id_f1")
_ID = re.compile(r"\d+")


def id_set_scores(prediction: str | None, reference: str) -> dict[str, float]:
    """Precision, recall and F1 (0-100) of the set of numbers in `prediction` against those in `reference`:
    outputs that list sentence ids (MUG topic segmentation, action items; "无" / "none" = the empty set).
    Both empty is a perfect answer; one empty scores 0.

    Example: id_set_scores("3, 7, 9", "3,9,12") -> precision 66.7, recall 66.7, f1 66.7
    """
    pred, gold = set(_ID.findall(prediction or "")), set(_ID.findall(reference))
    if not pred and not gold:
        return {k: 100.0 for k in ID_METRICS}
    hit = len(pred & gold)
    p, r = (hit / len(pred) if pred else 0.0), (hit / len(gold) if gold else 0.0)
    return {"id_precision": 100 * p, "id_recall": 100 * r, "id_f1": 200 * p * r / (p + r) if p + r else 0.0}


def mean_scores(scores: list[dict]) -> dict[str, float]:
    """The mean over the rows of each metric they have (what `compare` bootstraps)."""
    if not scores:
        return {k: 0.0 for k in METRICS}
    return {k: sum(s[k] for s in scores) / len(scores) for k in METRICS + ID_METRICS if k in scores[0]}
