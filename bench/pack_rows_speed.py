"""Benchmark (not a test): one packed row of two long examples against two rows, one LoRA training step each.

Why `train.packing` for SFT fills rows of up to model.max_length instead of putting the whole batch in one row:
under the pack's block-diagonal mask the attention kernel computes the whole T x T product, so two 512-token
examples in one 1,024-token row cost twice the attention of two 512-token rows (which, holding one example
each, need no mask and run causally) while saving no padding. The step: gemma-3-270m in fp32 (bf16 autocast
where `train.bf16: auto` would choose it is not applied: this measures the layout), LoRA r 8 on every linear map
of all 18 layers, logits at 8 answer positions per example (`models/lm_head.logits_at`, as SFT trains),
forward + backward, the two layouts interleaved --repeats times after one warm-up each.

Run: python bench/pack_rows_speed.py [--length 512] [--repeats 5] [--out bench/pack_rows_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def batches(length: int, answer: int = 8) -> dict:
    """The same two examples as one packed row and as two rows: (input_ids, position_ids, rows, cols)."""
    import torch

    ids, positions = torch.full((1, 2 * length), 5), torch.cat([torch.arange(length)] * 2)[None]
    last = torch.arange(length - answer - 1, length - 1)
    one_row = (ids, positions, torch.zeros(2 * answer, dtype=torch.long), torch.cat([last, last + length]))
    two_rows = (ids.view(2, length), positions.view(2, length), torch.arange(2).repeat_interleave(answer),
                last.repeat(2))
    return {"one row of 2 x length": one_row, "two rows": two_rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="bench/pack_rows_speed.json")
    a = p.parse_args()
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from tasktune.models.lm_head import logits_at
    from tasktune.models.loading import resolve_model

    model = AutoModelForCausalLM.from_pretrained(resolve_model("gemma-3-270m"), dtype=torch.float32)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    layouts = batches(a.length)

    def step(name: str) -> float:
        ids, positions, rows, cols = layouts[name]
        start = time.perf_counter()
        logits_at(model, ids, None, rows, cols, position_ids=positions).float().sum().backward()
        return time.perf_counter() - start

    times = {name: [] for name in layouts}
    for name in layouts:
        step(name)
    for _ in range(a.repeats):
        for name in layouts:
            times[name].append(round(step(name), 3))
    medians = {name: statistics.median(v) for name, v in times.items()}
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
              "length": a.length, "seconds": times, "median_s": medians,
              "one_row_over_two_rows": round(medians["one row of 2 x length"] / medians["two rows"], 3)}
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
