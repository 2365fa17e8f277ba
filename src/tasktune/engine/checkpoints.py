"""Checkpoint completeness: a checkpoint counts only once its COMPLETE marker is on disk.

The Trainer writes a checkpoint's files one by one; a crash midway leaves a folder that looks
like a checkpoint but cannot be resumed. The marker is written after every file is fsynced, so
resume picks the newest checkpoint that is whole.
"""

from __future__ import annotations

import re
from pathlib import Path

from tasktune.atomic import fsync_tree, write_text

MARKER = "COMPLETE"
_STEP = re.compile(r"^checkpoint-(\d+)$")


def mark_complete(checkpoint: str | Path) -> None:
    """fsync a checkpoint's files, then write its marker."""
    fsync_tree(checkpoint)
    write_text(Path(checkpoint) / MARKER, "ok\n")


def checkpoint_step(path: str | Path) -> int:
    m = _STEP.match(Path(path).name)
    return int(m.group(1)) if m else -1


def newest_complete_checkpoint(run_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in `run_dir`, or None."""
    found = [p for p in Path(run_dir).glob("checkpoint-*") if checkpoint_step(p) >= 0 and (p / MARKER).is_file()]
    return max(found, key=checkpoint_step, default=None)
