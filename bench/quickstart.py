"""Benchmark: the README quickstart's run against the majority baseline, with 95% bootstrap intervals.

Usage (after `tasktune train examples/quickstart.yaml`):
    python bench/quickstart.py runs/quickstart
Prints a JSON line; the figures go into bench/RESULTS.md by hand, with the command.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tasktune.metrics.bootstrap import bootstrap_ci


def main(run: str) -> dict:
    preds = [json.loads(x) for x in (Path(run) / "eval/eval/predictions.jsonl").read_text().splitlines()]
    meta = json.loads((Path(run) / "best/tasktune.json").read_text())
    counts = meta["state"]["label_counts"]
    majority = max(counts, key=counts.get)
    correct = [int(p["label"] == p["gold"]) for p in preds]
    base = [int(p["gold"] == majority) for p in preds]
    out = {"rows": len(preds)}
    for name, hits in (("model", correct), ("majority", base)):
        acc = sum(hits) / len(hits)
        lo, hi = bootstrap_ci(hits, lambda idx, h=hits: sum(h[i] for i in idx) / len(idx))
        out[name] = {"accuracy": round(acc, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")))
