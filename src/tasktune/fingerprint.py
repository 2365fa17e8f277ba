"""sha256 fingerprints of files, so a run can prove which data and base weights it used.

Example: sha256_files(["train.csv"]) -> "9f86d0..."
"""

from __future__ import annotations

import hashlib


def sha256_files(paths) -> str:
    """One sha256 over the bytes of `paths`, in the order given (a single file: its own sha256)."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
