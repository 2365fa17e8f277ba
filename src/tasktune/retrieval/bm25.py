"""BM25 over a corpus with the `bm25s` package: the lexical baseline beside every dense retrieval eval.

Tokens: for Chinese (most letters CJK) character unigrams and bigrams, since words are not spaced;
otherwise lower-cased words. bm25s does the indexing and scoring.

Example: bm25_rankings(corpus, ["BM25 是什么？"], k=10)   # [[("p3", 7.1), ...]]
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+", re.UNICODE)


def tokens(text: str, language: str) -> list[str]:
    """Character unigrams + bigrams of the CJK-bearing text (zh), or lower-cased words (en)."""
    if language == "zh":
        chars = [c for c in text if not c.isspace()]
        return chars + [a + b for a, b in zip(chars, chars[1:])]
    return _WORD.findall(text.lower())


def bm25_rankings(corpus, queries: list[str], k: int, language: str) -> list[list[tuple[str, float]]]:
    """The k best (id, BM25 score) of each query over `corpus` (retrieval.corpus.Corpus), best first."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index([tokens(t, language) for t in corpus.texts], show_progress=False)
    k = min(k, len(corpus.ids))
    docs, scores = retriever.retrieve([tokens(q, language) or ["\u0000"] for q in queries], k=k,
                                      show_progress=False)
    return [[(corpus.ids[int(d)], float(s)) for d, s in zip(row_d, row_s)] for row_d, row_s in zip(docs, scores)]
