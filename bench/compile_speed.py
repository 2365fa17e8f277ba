"""Benchmark (not a test): does `torch.compile` pay on this machine for a LoRA training step?

The quickstart's step (`examples/sentiment_zh.yaml`): gemma-3-270m, LoRA r 8 on every linear layer of the
top 9 layers, 8 reviews packed into one sequence (its length varies from step to step, as packing makes it:
so the compiled graph must take dynamic shapes, not recompile per length), the loss at one position per
review. Eager and compiled forward + backward on the same weights (a seeded twin for layers), interleaved, after the compiled side's
first calls (their wall time is the compile cost, reported apart). --mode layers: what `train.compile` does
(each transformer layer compiled in place, models/compile_layers.py); whole: the whole backbone in one graph
(what Trainer's `torch_compile` does to a model).

Run: python bench/compile_speed.py [--mode layers|whole] [--steps 6] [--lengths 420 470 520]
     [--out bench/compile_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def build(layers: int = 9):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tasktune.models.loading import resolve_model

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(resolve_model("gemma-3-270m"), dtype=torch.float32)
    n = model.config.num_hidden_layers
    linear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # all-linear
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=linear,
                      layers_to_transform=list(range(n - layers, n)))
    return get_peft_model(model, lora).train()


def packed_batch(length: int, rows: int = 8):
    """One packed sequence of `rows` reviews of about equal length; positions restart per review."""
    import torch

    sizes = [length // rows] * rows
    sizes[-1] += length - sum(sizes)
    ids = torch.randint(10, 20000, (1, length))
    position_ids = torch.cat([torch.arange(s) for s in sizes])[None]
    ends = torch.tensor(sizes).cumsum(0) - 1
    return ids, position_ids, torch.zeros(rows, dtype=torch.long), ends, torch.randint(10, 20000, (rows,))


def step_fn(model, backbone):
    import torch

    head = model.get_base_model().get_output_embeddings()

    def step(batch):
        ids, position_ids, rows, cols, targets = batch
        model.zero_grad(set_to_none=True)
        hidden = backbone(input_ids=ids, position_ids=position_ids, use_cache=False).last_hidden_state
        logits = head(hidden[rows, cols]).float()
        torch.nn.functional.cross_entropy(logits, targets).backward()
    return step


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=6, help="timed steps per side")
    p.add_argument("--lengths", type=int, nargs="+", default=[420, 470, 520], help="packed lengths, cycled")
    p.add_argument("--mode", default="layers", choices=["layers", "whole"])
    p.add_argument("--out", default="bench/compile_speed.json")
    a = p.parse_args()
    model = build()
    eager = step_fn(model, model.get_base_model().model)
    if a.mode == "whole":
        compiled = step_fn(model, torch.compile(model.get_base_model().model, dynamic=True))
    else:  # compiled in place: a second copy of the same weights (the build is seeded)
        from tasktune.models.compile_layers import compile_layers

        twin = build()
        compile_layers(twin)
        compiled = step_fn(twin, twin.get_base_model().model)
    batches = [packed_batch(n) for n in a.lengths]
    eager(batches[0])  # warm-up
    compile_s = []
    for b in batches:  # first call per length: compile (once, dynamic) and any recompiles
        t = time.perf_counter()
        compiled(b)
        compile_s.append(round(time.perf_counter() - t, 2))
    times = {"eager": [], "compiled": []}
    for i in range(a.steps):
        b = batches[i % len(batches)]
        for name, fn in (("eager", eager), ("compiled", compiled)):
            t = time.perf_counter()
            fn(b)
            times[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "mode": a.mode, "lengths": a.lengths, "first_calls_s": compile_s,
              **{k: {"median_s": round(med[k], 3), "all_s": [round(x, 3) for x in v]} for k, v in times.items()},
              "speedup_median": round(med["eager"] / med["compiled"], 3),
              "break_even_steps": round((compile_s[0] - med["compiled"]) / max(med["eager"] - med["compiled"], 1e-9))}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
