"""Tokenised training features, computed once: cached by what they depend on.

`task.prepare` turns rows into token ids; for long prompts (SFT meetings, QA windows) that is seconds
to minutes a run, repeated for every run of a sweep. The cache key is a sha256 over the task's name
and settings, `model.max_length`, the tokenizer (its vocabulary/merges file, special tokens and chat
template), the task state and the rows themselves, so any change to the data, the tokenizer, the
template, the cut-off or the task family's code makes a new entry. Entries live in `$TASKTUNE_CACHE/features/` (default
~/.cache/tasktune/features); `data.cache_features: false` turns it off; deleting the folder is safe.

Example:
    feats = prepared(task, rows, tokenizer, cfg, state)   # task.prepare's result, from the cache when known
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from tasktune.atomic import write_text

log = logging.getLogger("tasktune")


def features_dir() -> Path:
    """$TASKTUNE_FEATURE_CACHE, else $TASKTUNE_CACHE/features (default ~/.cache/tasktune/features)."""
    if os.environ.get("TASKTUNE_FEATURE_CACHE"):
        return Path(os.environ["TASKTUNE_FEATURE_CACHE"])
    return Path(os.environ.get("TASKTUNE_CACHE", Path.home() / ".cache" / "tasktune")) / "features"


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: its serialised model (or vocabulary), special tokens, template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = json.dumps([tokenizer.all_special_tokens, getattr(tokenizer, "chat_template", None),
                        getattr(tokenizer, "padding_side", None), type(tokenizer).__name__], default=str)
    return hashlib.sha256((body + extra).encode("utf-8")).hexdigest()


def _code(task) -> str | None:
    """sha256 of the task family's source file: a new tasktune that encodes rows differently never reads
    features an older one cached."""
    import inspect

    try:
        return hashlib.sha256(Path(inspect.getsourcefile(type(task))).read_bytes()).hexdigest()
    except (TypeError, OSError):  # a class defined interactively has no file: rows and settings still key it
        return None


def cache_key(task, rows: list[dict], tokenizer, cfg, state: dict) -> str:
    parts = {"task": task.name, "settings": cfg.task.model_dump(mode="json"), "max_length": cfg.model.max_length,
             "tokenizer": tokenizer_fingerprint(tokenizer), "state": state, "rows": rows, "code": _code(task)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")).hexdigest()


def prepared(task, rows: list[dict], tokenizer, cfg, state: dict) -> list[dict]:
    """`task.prepare(rows, tokenizer, cfg, state)`, read from the cache when the same inputs were prepared before."""
    if not rows or not cfg.data.cache_features:
        return task.prepare(rows, tokenizer, cfg, state)
    path = features_dir() / f"{cache_key(task, rows, tokenizer, cfg, state)}.json"
    if path.is_file():
        try:
            feats = json.loads(path.read_text(encoding="utf-8"))
            log.info("tokenised features of %d rows from the cache (%s)", len(rows), path.name[:12])
            return feats
        except (json.JSONDecodeError, OSError):
            log.warning("unreadable feature cache entry %s: preparing again", path)
    feats = task.prepare(rows, tokenizer, cfg, state)
    try:
        text = json.dumps(feats, separators=(",", ":"))
    except TypeError:  # a family whose features are not plain lists and numbers: simply not cached
        return feats
    write_text(path, text)  # atomic: a reader never sees half a file
    return feats
