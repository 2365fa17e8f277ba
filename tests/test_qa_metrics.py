"""EM/F1 against hand-computed cases under the official CMRC 2018 and SQuAD rules; threshold fitting."""

from __future__ import annotations

import pytest

from tasktune.metrics.qa import cmrc_segments, detect_language, qa_metrics, qa_scores
from tasktune.tasks.qa_spans import fit_threshold


def test_cmrc_mixed_segmentation_rules():
    # CJK characters alone, Latin/digit runs as words, listed punctuation dropped, lower-cased.
    assert cmrc_segments("2018年CMRC比赛，Hello World！") == ["2018", "年", "cmrc", "比", "赛", "hello", "world"]
    # "……" is one two-character entry of the official list, so a lone "…" survives (as officially).
    assert "…" in cmrc_segments("好…")
    # ASCII punctuation that is not in the list stays a token (the official script keeps it).
    assert cmrc_segments("U.S.A, ok") == ["u.s.a", ",", "ok"]


def test_cmrc_scores_by_hand():
    # pred 北京市 vs gold 北京: common run 2, precision 2/3, recall 1 -> F1 0.8; EM 0.
    assert qa_scores("北京市", ["北京"], "zh") == {"exact": 0.0, "f1": pytest.approx(0.8)}
    # EM ignores listed punctuation and case; best over references.
    assert qa_scores("《红楼梦》", ["西游记", "红楼梦"], "zh")["exact"] == 1.0
    # F1 uses the longest common *contiguous* run: 甲乙丙丁 vs 甲丙 share runs of 1 only -> 2*(1/2*1/4)/(3/4).
    assert qa_scores("甲丙", ["甲乙丙丁"], "zh")["f1"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    # mixed: "2100万人" vs "2100万": segments [2100, 万, 人] vs [2100, 万] -> P 2/3, R 1.
    assert qa_scores("2100万人", ["2100万"], "zh")["f1"] == pytest.approx(0.8)


def test_squad_scores_by_hand():
    assert qa_scores("The Eiffel Tower!", ["eiffel tower"], "en") == {"exact": 1.0, "f1": 1.0}
    # bag of words: pred "tower in paris" vs gold "eiffel tower": 1 common; P 1/3, R 1/2 -> 0.4.
    assert qa_scores("tower in Paris", ["Eiffel tower"], "en")["f1"] == pytest.approx(0.4)
    # a gold that normalises to nothing but articles matches only an equally empty prediction
    assert qa_scores("a", ["the"], "en")["exact"] == 1.0


def test_no_answer_rules():
    for language in ("zh", "en"):
        assert qa_scores(None, [], language) == {"exact": 1.0, "f1": 1.0}
        assert qa_scores("北京", [], language) == {"exact": 0.0, "f1": 0.0}
        assert qa_scores(None, ["北京"], language) == {"exact": 0.0, "f1": 0.0}


def test_breakdown_and_no_answer_precision_recall():
    preds = ["北京", None, None, "上海"]
    golds = [["北京"], ["成都"], [], []]
    m = qa_metrics(preds, golds, "zh", ["city", "city", "name", "name"])
    assert m["exact"] == pytest.approx(50.0) and m["has_answer_exact"] == pytest.approx(50.0)
    assert m["no_answer_exact"] == pytest.approx(50.0)
    # said "no answer" twice, right once; one of two no-answer rows found
    assert m["no_answer_precision"] == pytest.approx(50.0) and m["no_answer_recall"] == pytest.approx(50.0)
    assert m["per_field"]["city"] == {"rows": 2, "exact": 50.0, "f1": 50.0}


def test_language_detection():
    assert detect_language(["北京是中国的首都。", "上海很大"]) == "zh"
    assert detect_language(["Paris is the capital of France."]) == "en"


def test_fit_threshold_maximises_f1():
    # margins (best span - null); answering row i scores f1_answered[i], abstaining f1_null[i]
    margins = [3.0, 1.0, -1.0, -2.0, None]
    answered = [1.0, 0.0, 1.0, 0.0, 0.0]
    null = [0.0, 1.0, 0.0, 1.0, 1.0]
    t, f1 = fit_threshold(margins, answered, null)
    # best: answer rows with margin > t for t in (1, 3) -> rows 0 (1) + null on 1, 3, 4 (3) + row 2 lost = 4/5
    # or t in (-2, -1) -> rows 0, 1, 2 answered (1 + 0 + 1) + rows 3, 4 null (2) = 4/5: the first found wins
    assert f1 == pytest.approx(80.0)
    chosen = [m is not None and m > t for m in margins]
    assert sum(a if c else n for a, n, c in zip(answered, null, chosen)) == 4
