"""Benchmark (not a test): LoRA input dropout, torch's nn.Dropout vs tasktune's CheapDropout, on this CPU.

Two figures, both sides interleaved in one process (the machine's drift hits both alike), best and median:
- one dropout call on a (2, 512, 640) activation: `nn.functional.dropout` vs `CheapDropout`;
- one LoRA training step of gemma-3-270m (r 8, alpha 16, dropout 0.05, every linear layer of all 18
  layers: 126 dropout calls), 2 x 512 tokens, loss on the last 12 tokens of each row through
  `lm_head.logits_at` (what SFT trains with): forward + backward, the dropout modules swapped between
  repeats.

--profile adds the share of each op in one step's self CPU time under `torch.profiler` with torch's dropout (where
the share of `aten::bernoulli_` comes from) and with CheapDropout, on the same model after the timed steps.

Run: python bench/lora_dropout_speed.py [--repeats 5] [--profile] [--out bench/lora_dropout_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(seconds: list[float]) -> dict:
    return {"best_s": round(min(seconds), 4), "median_s": round(statistics.median(seconds), 4),
            "all_s": [round(s, 4) for s in seconds]}


def per_call(repeats: int) -> dict:
    import torch

    from tasktune.models.lora_dropout import CheapDropout

    x = torch.randn(2, 512, 640)
    cheap = CheapDropout(0.05)
    sides = {"torch": lambda: torch.nn.functional.dropout(x, 0.05, True), "cheap": lambda: cheap(x)}
    times = {k: [] for k in sides}
    for _ in range(repeats):
        for name, fn in sides.items():
            times[name] += timed(fn, 20)
    return {k: summary(v) for k, v in times.items()}


def op_shares(fn, top: int = 8) -> dict:
    """Share of self CPU time per op over one call of `fn`, the `top` largest, in percent."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    return {k: round(100 * t / total, 1) for k, t in sorted(events, key=lambda e: -e[1])[:top]}


def training_step(repeats: int, profile: bool = False) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tasktune.models.lm_head import logits_at, next_token_positions
    from tasktune.models.loading import resolve_model
    from tasktune.models.lora_dropout import CheapDropout

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("gemma-3-270m"), dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules="all-linear"))
    model.train()
    layers = [m for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)]
    plain = {id(m): m.lora_dropout["default"] for m in layers}
    ids = torch.randint(10, 20000, (2, 512))
    labels = torch.full_like(ids, -100)
    labels[:, -12:] = ids[:, -12:]
    rows, cols, targets = next_token_positions(labels)

    def step():
        model.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(logits_at(model, ids, None, rows, cols), targets).backward()

    def use(cheap: bool):
        for m in layers:
            m.lora_dropout["default"] = CheapDropout(0.05) if cheap else plain[id(m)]

    step()  # warm-up
    times = {"torch": [], "cheap": []}
    for _ in range(repeats):
        for name in times:
            use(name == "cheap")
            times[name] += timed(step, 1)
    result = {"dropout_calls_per_step": len(layers), **{k: summary(v) for k, v in times.items()}}
    if profile:
        result["profile_percent_self_cpu"] = {}
        for name in ("torch", "cheap"):
            use(name == "cheap")
            result["profile_percent_self_cpu"][name] = op_shares(step)
    return result


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="also the op shares of one step with each dropout")
    p.add_argument("--out", default="bench/lora_dropout_speed.json")
    a = p.parse_args()
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "per_call": per_call(a.repeats), "training_step": training_step(a.repeats, a.profile)}
    for part in ("per_call", "training_step"):
        r = result[part]
        r["speedup_median"] = round(r["torch"]["median_s"] / r["cheap"]["median_s"], 2)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items()}, indent=1))


if __name__ == "__main__":
    main()
