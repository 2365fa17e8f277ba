"""Benchmark (not a test): where one training step of a tasktune config spends its time, fp32 beside bf16 autocast.

Builds the run exactly as `tasktune train` does (config + overrides, the task's model, cached features, the
engine's Trainer) in a temporary folder with `train.bf16=false`, takes the first --steps batches of the training
loader, and times `Trainer.training_step` on them (forward + backward, no optimizer step) as it is (fp32) and with
the forward under `torch.autocast("cpu", dtype=torch.bfloat16)` (the Trainer's loss context, where the run puts
autocast when `train.bf16` turns bf16 on; the backward stays outside it, as in a run; one process holds one
accelerate state, so one Trainer serves both sides), interleaved --repeats times. Then one
step of each under torch.profiler: the share of self CPU time per op (top --top), of the matmuls and of attention.

Run: python bench/step_profile.py [examples/sentiment_zh.yaml] [--set KEY=VALUE ...] [--steps 4] [--repeats 3]
     [--out bench/step_profile.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "mkldnn", "onednn")
ATTENTION_OPS = ("scaled_dot_product",)  # SDPA forward and backward, counted apart from the matmuls


def build(config: str, overrides: list[str], folder: Path):
    """The Trainer of `config` (fp32) as run.train builds it."""
    from transformers import set_seed

    from tasktune.config import load_config
    from tasktune.data.dataset import load_splits
    from tasktune.engine.features import prepared
    from tasktune.engine.trainer import build_trainer
    from tasktune.models.loading import resolve_model
    from tasktune.tasks import get_task

    folder.mkdir(parents=True)
    cfg = load_config(config, [*overrides, "train.bf16=false", f"output_dir={folder}",
                               "train.eval_during_training=false", "train.compile=false"])
    task = get_task(cfg.task.name)
    splits = load_splits(cfg, task)
    set_seed(cfg.train.seed)
    model, tok = task.build_model(resolve_model(cfg.model.name), cfg, splits.state, for_training=True)
    feats = prepared(task, splits.train, tok, cfg, splits.state)
    return build_trainer(task, cfg, model, tok, feats, [], splits.state, folder, [])


def precision(name: str):
    import contextlib

    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if name == "bf16" else contextlib.nullcontext()


def timed_steps(trainer, batches, name: str) -> float:
    """Seconds for forward + backward over `batches` (the optimizer is not stepped: the weights stay put)."""
    trainer.compute_loss_context_manager = lambda: precision(name)  # the forward only, as in a real run
    start = time.perf_counter()
    for batch in batches:
        trainer.training_step(trainer.model, batch)
    trainer.model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def op_shares(trainer, batch, name: str, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    trainer.compute_loss_context_manager = lambda: precision(name)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.training_step(trainer.model, batch)
    trainer.model.zero_grad(set_to_none=True)
    events = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in events)
    def share(ops) -> float:
        return round(100 * sum(t for k, t in events if any(m in k for m in ops)) / total, 1)

    return {"matmul_percent": share(MATMUL_OPS), "attention_percent": share(ATTENTION_OPS),
            "top_percent": {k: round(100 * t / total, 1) for k, t in sorted(events, key=lambda e: -e[1])[:top]}}


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", nargs="?", default=str(Path(__file__).parents[1] / "examples" / "sentiment_zh.yaml"))
    p.add_argument("--set", nargs="*", default=[], help="dotted overrides, as on the tasktune command line")
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--out", default="bench/step_profile.json")
    a = p.parse_args()
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(), "config": a.config,
              "overrides": a.set, "steps": a.steps, "sides": {}}
    with tempfile.TemporaryDirectory() as tmp:
        trainer = build(a.config, a.set, Path(tmp) / "run")
        loader = iter(trainer.get_train_dataloader())
        batches = [next(loader) for _ in range(a.steps)]
        times = {"fp32": [], "bf16": []}
        for name in times:
            timed_steps(trainer, batches[:1], name)  # warm-up
        for _ in range(a.repeats):
            for name in times:
                times[name].append(timed_steps(trainer, batches, name))
        for name in times:
            result["sides"][name] = {"seconds_per_step": round(statistics.median(times[name]) / a.steps, 3),
                                     "all_s": [round(t, 2) for t in times[name]],
                                     **op_shares(trainer, batches[0], name, a.top)}
    result["bf16_speedup"] = round(result["sides"]["fp32"]["seconds_per_step"]
                                   / result["sides"]["bf16"]["seconds_per_step"], 2)
    Path(a.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(result, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
