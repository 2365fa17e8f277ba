"""Benchmark runs in subprocesses: a `tasktune train` measured, the skip rule for absent data, the results file."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def runs_folder(data: Path, runs: str) -> Path | None:
    """The folder for benchmark runs, or None (after saying why) when the shared data is absent."""
    if not data.is_file():
        print(f"skipped: {data} not found (the shared data folder is not beside the project)")
        return None
    out = Path(runs)
    out.mkdir(parents=True, exist_ok=True)
    return out


def train_subprocess(out: Path, args: list[str], folder: Path, check: bool = True, config: Path | None = None) -> dict:
    """`tasktune train` of `config` (default: an empty one) with dotted `args` into `folder`; wall time, train
    samples/s, peak RSS so far."""
    cfg = config or out / "empty.yaml"
    if config is None:
        cfg.write_text("{}\n")
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "tasktune", "train", str(cfg), *args, f"output_dir={folder}",
                           "--overwrite"], capture_output=True, text=True)
    if proc.returncode and check:
        raise SystemExit(f"{folder} failed:\n{proc.stderr[-3000:]}")
    return {"run": str(folder), "wall_s": round(time.time() - start, 1),
            "train_samples_per_s": history_value(folder, "train_samples_per_second"),
            "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def history_value(folder: Path, key: str):
    """The last value of `key` in a run folder's metrics_history.json, or None."""
    history = json.loads((folder / "metrics_history.json").read_text())
    return next((h[key] for h in reversed(history) if key in h), None)


def write_results(path: str, result: dict, table: dict, keys: tuple[str, ...], digits: int) -> None:
    """Write `result` (with the compare table as 'quality') to `path`; print the table as markdown rows."""
    Path(path).write_text(json.dumps({**result, "quality": table}, ensure_ascii=False, indent=2) + "\n")
    print_table(table, keys, digits)


def print_table(table: dict, keys: tuple[str, ...], digits: int) -> None:
    """The compare table as markdown rows: value [95% interval] per key."""
    for name, m in table.items():
        cells = [f"{m[k]['value']:.{digits}f} [{m[k]['ci95'][0]:.{digits}f}, {m[k]['ci95'][1]:.{digits}f}]" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


def measured(cmd: list[str]) -> dict:
    """Run `cmd` under a wrapper process whose only child it is: wall seconds and the child's peak RSS (GiB)."""
    wrapper = ("import json, resource, subprocess, sys, time; t = time.time(); "
               "r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(json.dumps({'rc': r.returncode, 'seconds': round(time.time() - t, 1), 'stdout': r.stdout[-4000:], "
               "'stderr': r.stderr[-3000:], 'peak_rss_gib': round(resource.getrusage(resource.RUSAGE_CHILDREN)"
               ".ru_maxrss / 2**20, 2)}))")
    out = json.loads(subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True,
                                    check=True).stdout)
    if out["rc"]:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{out['stderr']}")
    return out
