"""Exact match and F1 for extractive QA, in two official flavours, plus the no-answer breakdown.

- "en": the SQuAD v1.1/v2.0 rules: lower-case, drop ASCII punctuation and the articles a/an/the,
  split on whitespace; F1 from the bag-of-tokens overlap.
- "zh": the CMRC 2018 rules (its official evaluate script, v5): lower-case; "mixed segmentation"
  makes each CJK character (U+4E00-U+9FA5) and each listed punctuation mark one token and runs of
  anything else NLTK word tokens; the listed punctuation is dropped for F1 and EM; F1 comes from the
  longest common *contiguous* run of tokens. One difference: the official script calls
  `nltk.word_tokenize` with sentence splitting, which needs the Punkt data files (a download);
  here Latin runs are tokenized without sentence splitting (`preserve_line=True`). The two differ
  only inside a Latin run that holds a sentence-final period followed by more text.

Empty strings mean "no answer": a no-answer gold scores 1 only for an empty prediction and
a no-answer prediction scores 0 against a real answer (the SQuAD v2.0 rule, used for both flavours).
Each score is the best over the gold answers.

Example:
    qa_scores("北京市", ["北京"], "zh")     # {'exact': 0.0, 'f1': 0.8}
    qa_scores("the Eiffel Tower", ["Eiffel tower"], "en")   # {'exact': 1.0, 'f1': 1.0}
"""

from __future__ import annotations

import re
import string
from collections import Counter

# The CMRC 2018 script's list, as it is: "……" is one entry of two characters, which a
# character-by-character check never matches, so a lone "…" is kept (as officially).
CMRC_PUNCT = set(['-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=', '，', '。', '：', '？', '！', '“', '”',
                  '；', '’', '《', '》', '……', '·', '、', '「', '」', '（', '）', '－', '～', '『', '』'])
_CJK = re.compile("[\u4e00-\u9fa5]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK_ANY = re.compile("[\u3400-\u9fff]")


def _latin_tokens(text: str) -> list[str]:
    from nltk.tokenize import word_tokenize

    return word_tokenize(text, preserve_line=True)


def cmrc_segments(text: str, drop_punct: bool = True) -> list[str]:
    """CMRC 2018 mixed segmentation: CJK characters and listed marks alone, other runs NLTK-tokenized."""
    out, run = [], ""
    for ch in str(text).lower().strip():
        if drop_punct and ch in CMRC_PUNCT:
            continue
        if _CJK.match(ch) or ch in CMRC_PUNCT:
            if run:
                out.extend(_latin_tokens(run))
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.extend(_latin_tokens(run))
    return out


def cmrc_strip(text: str) -> str:
    """CMRC 2018 EM normalisation: lower-case, strip, drop the listed punctuation (whitespace inside stays)."""
    return "".join(ch for ch in str(text).lower().strip() if ch not in CMRC_PUNCT)


def longest_common_run(a: list[str], b: list[str]) -> int:
    """Length of the longest common contiguous run of tokens (the official script's 'lcs')."""
    best, prev = 0, [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y:
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def squad_normalize(text: str) -> str:
    """SQuAD normalisation: lower, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(common: int, pred_len: int, gold_len: int) -> float:
    if common == 0:
        return 0.0
    precision, recall = common / pred_len, common / gold_len
    return 2 * precision * recall / (precision + recall)


def _one(pred: str, gold: str, language: str) -> tuple[float, float]:
    if not pred or not gold:  # the no-answer rule
        return (float(pred == gold),) * 2
    if language == "zh":
        p, g = cmrc_segments(pred), cmrc_segments(gold)
        return float(cmrc_strip(pred) == cmrc_strip(gold)), _f1(longest_common_run(g, p), len(p), len(g))
    p, g = squad_normalize(pred).split(), squad_normalize(gold).split()
    common = sum((Counter(p) & Counter(g)).values())
    exact = float(squad_normalize(pred) == squad_normalize(gold))
    return exact, (_f1(common, len(p), len(g)) if p and g else float(p == g))


def qa_scores(pred: str | None, golds: list[str], language: str) -> dict[str, float]:
    """{'exact', 'f1'} of one prediction (None or '' = no answer) against its gold answers ([] = none)."""
    pred = pred or ""
    golds = [g for g in golds if g] or [""]
    scores = [_one(pred, g, language) for g in golds]
    return {"exact": max(s[0] for s in scores), "f1": max(s[1] for s in scores)}


def detect_language(texts: list[str]) -> str:
    """'zh' when at least a fifth of the texts' letters are CJK, else 'en' (the metric_language auto rule)."""
    sample = "".join(texts[:200])
    letters = sum(ch.isalpha() for ch in sample)
    return "zh" if letters and len(_CJK_ANY.findall(sample)) / letters >= 0.2 else "en"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def score_rows(preds: list[str | None], golds: list[list[str]], language: str,
               fields: list[str | None] | None = None) -> list[dict]:
    """Per row: exact and f1 (0/1 scale), whether the gold has an answer, whether the prediction said
    none, and the row's field; `summarize` turns any subset of these into the metrics."""
    fields = fields or [None] * len(preds)
    out = []
    for p, g, f in zip(preds, golds, fields):
        s = qa_scores(p, g, language)
        out.append({"exact": s["exact"], "f1": s["f1"], "has": bool([x for x in g if x]), "none": not p,
                    "field": f})
    return out


def summarize(scored: list[dict]) -> dict:
    """EM/F1 (in %, as the official scripts print), HasAns/NoAns breakdown, no-answer precision/recall,
    and a per-field breakdown when rows name a field, from `score_rows` entries."""
    has = [s["has"] for s in scored]
    out = {"exact": 100 * _mean([s["exact"] for s in scored]), "f1": 100 * _mean([s["f1"] for s in scored]),
           "total": len(scored), "has_answer_total": sum(has), "no_answer_total": len(has) - sum(has)}
    for name, keep in (("has_answer", True), ("no_answer", False)):
        part = [s for s in scored if s["has"] == keep]
        if part:
            out[f"{name}_exact"] = 100 * _mean([s["exact"] for s in part])
            out[f"{name}_f1"] = 100 * _mean([s["f1"] for s in part])
    said_none = sum(s["none"] for s in scored)
    right_none = sum(1 for s in scored if s["none"] and not s["has"])
    out["no_answer_precision"] = 100 * right_none / said_none if said_none else 0.0
    out["no_answer_recall"] = 100 * right_none / (len(has) - sum(has)) if len(has) > sum(has) else 0.0
    if any(s["field"] is not None for s in scored):
        by_field: dict[str, list[dict]] = {}
        for s in scored:
            by_field.setdefault(str(s["field"]), []).append(s)
        out["per_field"] = {f: {"rows": len(v), "exact": 100 * _mean([s["exact"] for s in v]),
                                "f1": 100 * _mean([s["f1"] for s in v])} for f, v in sorted(by_field.items())}
    return out


def qa_metrics(preds: list[str | None], golds: list[list[str]], language: str,
               fields: list[str | None] | None = None) -> dict:
    """`summarize(score_rows(...))`: every metric of predicted answers (None = no answer) against golds."""
    return summarize(score_rows(preds, golds, language, fields))
