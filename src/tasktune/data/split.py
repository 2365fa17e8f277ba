"""Seeded, stratified train/eval splits and seeded row sampling.

Example:
    train, held = stratified_split(rows, fraction=0.1, seed=42, key=lambda r: r["label"])
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Callable


def stratified_split(rows: list[dict], fraction: float, seed: int, key: Callable[[dict], object] | None = None,
                     group: Callable[[dict], object] | None = None) -> tuple[list[dict], list[dict]]:
    """Split rows into (kept, held_out) with `fraction` held out of every `key` group.

    With `group` (e.g. the context a question is about), rows sharing a group go to the same
    side, whole groups held out in seeded order until `fraction` of the rows is reached:
    questions on one paragraph in both parts would leak answers from training into eval.

    Each group keeps at least one row in both parts when it has two or more rows, so a rare
    label is neither lost from training nor missing from eval. Order within each part follows
    the input order, so the split is reproducible from ids alone.
    """
    if group is not None:
        return _group_split(rows, fraction, seed, group)
    groups: dict[object, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[key(row) if key else None].append(i)
    rng = random.Random(seed)
    held: set[int] = set()
    for name in sorted(groups, key=str):
        idx = groups[name][:]
        rng.shuffle(idx)
        n = round(len(idx) * fraction)
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        held.update(idx[:n])
    kept = [r for i, r in enumerate(rows) if i not in held]
    return kept, [r for i, r in enumerate(rows) if i in held]


def _group_split(rows, fraction, seed, group):
    members: dict[object, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        members[group(row)].append(i)
    names = sorted(members, key=str)
    random.Random(seed).shuffle(names)
    target = max(1, round(len(rows) * fraction)) if len(names) > 1 else 0
    held: set[int] = set()
    for name in names[:-1]:  # the last group always stays in training
        if len(held) >= target:
            break
        held.update(members[name])
    return [r for i, r in enumerate(rows) if i not in held], [r for i, r in enumerate(rows) if i in held]


def sample_rows(rows: list[dict], n: int | None, seed: int,
                key: Callable[[dict], object] | None = None) -> list[dict]:
    """At most `n` rows, drawn stratified by `key` and seeded; all rows when n is None or larger."""
    if n is None or n >= len(rows):
        return rows
    _, sample = stratified_split(rows, n / len(rows), seed, key)
    return sample
