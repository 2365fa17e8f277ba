"""The run folder: create, refuse, resume; env.json, data.json, config.yaml, train.log.

A folder is never overwritten silently. An unfinished run with the same config and data resumes
from its newest complete checkpoint (train.resume: auto); anything else stops with a message
that names --overwrite.

Example:
    resume_from = prepare_run_dir(cfg, data_info, overwrite=False)   # None or checkpoint path
"""

from __future__ import annotations

import json
import logging
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

from tasktune.atomic import write_json, write_text
from tasktune.config import to_yaml
from tasktune.engine.checkpoints import newest_complete_checkpoint
from tasktune.errors import UserError

log = logging.getLogger("tasktune")
BEST = "best"
PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets", "tokenizers", "safetensors",
            "tasktune")


def _first_difference(old, new, prefix=""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else (prefix.rstrip("."), old, new)


def _refuse(run_dir: Path, why: str):
    raise UserError(f"run folder '{run_dir}' {why}; pass --overwrite to replace it, "
                    "or choose another output_dir=...")


def check_run_dir(cfg, data_info: dict) -> Path | None:
    """What training into cfg.output_dir would do: None (fresh start) or the checkpoint to resume.

    Raises UserError when the folder holds something that must not be overwritten silently.
    """
    run_dir = Path(cfg.output_dir)
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    if not (run_dir / "config.yaml").is_file():
        _refuse(run_dir, "exists and is not a tasktune run")
    if (run_dir / BEST / "tasktune.json").is_file():
        _refuse(run_dir, "holds a finished run")
    if cfg.train.resume == "never":
        _refuse(run_dir, "holds an unfinished run and train.resume is 'never'")
    old = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    new = cfg.model_dump(mode="json")
    for tree in (old, new):
        tree.get("train", {}).pop("resume", None)
    diff = _first_difference(old, new)
    if diff:
        _refuse(run_dir, f"holds an unfinished run with {diff[0]}={diff[1]!r}, not {diff[2]!r}; "
                         "resume with the same config")
    old_data = json.loads((run_dir / "data.json").read_text()) if (run_dir / "data.json").is_file() else {}
    for role, info in data_info["files"].items():
        if old_data.get("files", {}).get(role, {}).get("sha256") not in (None, info["sha256"]):
            _refuse(run_dir, f"was trained on a different {role} file than {info['path']} (sha256 changed)")
    return newest_complete_checkpoint(run_dir)


def prepare_run_dir(cfg, data_info: dict, overwrite: bool) -> Path | None:
    """Make cfg.output_dir ready (main process only); returns the checkpoint to resume or None."""
    run_dir = Path(cfg.output_dir)
    if overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    resume = check_run_dir(cfg, data_info)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", to_yaml(cfg))
    write_json(run_dir / "data.json", data_info)
    return resume


def git_sha(folder: str | Path = ".") -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_env(run_dir: str | Path, cfg, resumed_from: str | None) -> None:
    """env.json: versions, seed, device and process count, git sha of the working directory."""
    import torch
    from accelerate import PartialState

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    from tasktune.precision import decide_bf16

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({cpu_name()})"
    write_json(Path(run_dir) / "env.json", {
        "python": sys.version.split()[0], "platform": platform.platform(), "versions": versions,
        "seed": cfg.train.seed, "device": device, "processes": PartialState().num_processes,
        "torch_threads": torch.get_num_threads(), "git_sha": git_sha(), "command": sys.argv,
        "resumed_from": resumed_from, "precision": decide_bf16(cfg.train.bf16).as_dict(),
    })


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and the widest vector unit torch uses, e.g. "AMD EPYC 7B13, AVX2".

    Speed figures depend on both (bf16 is fast only with AVX-512 BF16 / AMX), and platform.processor()
    is empty on most Linux systems. The name comes from /proc/cpuinfo where there is one.
    """
    import torch

    name = platform.processor()
    try:
        lines = Path(cpuinfo).read_text(errors="replace").splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), name)
    except OSError:
        pass
    return f"{name or 'unknown'}, {torch.backends.cpu.get_cpu_capability()}"


class _Console(logging.StreamHandler):
    """A console handler that writes to whatever sys.stderr is at the time of each line.

    Why not StreamHandler(sys.stderr): that binds the stream of the moment it was made, and a
    caller that swaps stderr for a while (a notebook cell, pytest's capture) leaves it writing
    to a closed file ("--- Logging error ---" on every later line).
    """

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):  # StreamHandler.__init__ assigns one; the property ignores it
        pass


def setup_logging(run_dir: str | Path | None = None) -> None:
    """tasktune's log lines go to the console and, with `run_dir`, appended to train.log with timestamps."""
    logger = logging.getLogger("tasktune")
    logger.setLevel(logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               for h in logger.handlers):
        console = _Console()
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    if run_dir is not None:
        for h in [h for h in logger.handlers if isinstance(h, logging.FileHandler)]:
            logger.removeHandler(h)
            h.close()
        fh = logging.FileHandler(Path(run_dir) / "train.log", encoding="utf-8")
        fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(fh)
    logger.propagate = False
