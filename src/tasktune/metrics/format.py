"""One way to print metrics: `accuracy 0.8520  macro_f1 0.8519` (logs, baseline tables, compare).

Example: metric_line({"exact": 61.2, "f1": 70.04, "rows": 9}, ("exact", "f1"))  # 'exact 61.2000  f1 70.0400'
"""

from __future__ import annotations


def metric_line(metrics: dict, keys, signed: bool = False) -> str:
    """The `keys` present in `metrics` as `name value` pairs, 4 decimals; an interval when the value is one;
    `signed` writes a + on positive values (differences)."""
    fmt = "+.4f" if signed else ".4f"
    parts = []
    for k in keys:
        v = metrics.get(k)
        if isinstance(v, dict) and "value" in v:
            lo, hi = v["ci95"]
            parts.append(f"{k} {v['value']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]")
        elif isinstance(v, (int, float)):
            parts.append(f"{k} {v:{fmt}}")
    return "  ".join(parts)
