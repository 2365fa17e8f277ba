"""Small retrieval sets written offline: a corpus of facts and questions that each have one passage."""

from __future__ import annotations

import random

ANIMALS = ["fox", "owl", "bear", "wolf", "seal", "crow", "deer", "hare", "lynx", "mole", "frog", "swan",
           "toad", "wren", "yak", "ibis", "lark", "newt", "orca", "puma"]
PLACES = ["forest", "river", "desert", "mountain", "lake", "island", "valley", "marsh"]
FOODS = ["berries", "fish", "seeds", "insects", "roots", "grass", "mice", "worms"]


def corpus_and_queries(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """40 passages (two per animal: where it lives, what it eats) and one question per passage."""
    rng = random.Random(seed)
    corpus, queries = [], []
    for i, animal in enumerate(ANIMALS):
        place, food = rng.choice(PLACES), rng.choice(FOODS)
        corpus.append({"id": f"p{2 * i}", "text": f"the {animal} lives near the {place} all year"})
        corpus.append({"id": f"p{2 * i + 1}", "text": f"the {animal} mostly eats {food} in summer"})
        queries.append({"id": f"q{2 * i}", "query": f"where does the {animal} live", "positive_ids": [f"p{2 * i}"]})
        queries.append({"id": f"q{2 * i + 1}", "query": f"what does the {animal} eat",
                        "positive_ids": [f"p{2 * i + 1}"]})
    return corpus, queries


def vocabulary() -> list[str]:
    corpus, queries = corpus_and_queries()
    return [c["text"] for c in corpus] * 3 + [q["query"] for q in queries] * 3
