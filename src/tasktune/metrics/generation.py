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


def text_scores(prediction: str | None, reference: str, unit: str) -> dict[str, float]:
    """The five metrics of one generation (0-100)."""
    from sacrebleu.metrics import BLEU

    pred = prediction or ""
    rouge = _scorer(unit).score(reference, pred)
    # BLEU on the same units, joined by spaces, so sacrebleu's own tokenizer changes nothing.
    bleu = BLEU(tokenize="none", effective_order=True).sentence_score(
        " ".join(_tokens(pred, unit)), [" ".join(_tokens(reference, unit))]).score if pred.strip() else 0.0
    same = _SPACE.sub(" ", pred.strip()) == _SPACE.sub(" ", reference.strip())
    return {"rouge-1": 100 * rouge["rouge1"].fmeasure, "rouge-2": 100 * rouge["rouge2"].fmeasure,
            "rouge-l": 100 * rouge["rougeL"].fmeasure, "bleu-4": bleu, "exact_match": 100.0 * same}


def mean_scores(scores: list[dict]) -> dict[str, float]:
    """The mean of each metric over rows (what `compare` bootstraps)."""
    return {k: sum(s[k] for s in scores) / len(scores) if scores else 0.0 for k in METRICS}
