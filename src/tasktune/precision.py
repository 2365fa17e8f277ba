"""bf16 only where it is fast: decide mixed precision from the hardware, not from a guess.

On GPUs with bf16 support (Ampere and newer) bf16 autocast is the norm. On CPUs it depends on the
chip: with bf16 matrix units (AMX, AVX-512 BF16) a bf16 matmul runs ~3.5x faster than fp32; with
AVX2 only, torch emulates bf16 and the same matmul runs ~140x SLOWER (a 5-hour quickstart instead
of 8 minutes). `torch.backends.cpu.get_cpu_capability()` does not tell AMX apart, so on CPUs a probe
times one small matmul in both dtypes (a few tens of milliseconds, once per process) and bf16 is
used only where it wins by BF16_MIN_SPEEDUP.

`train.bf16` is `auto` (the default: the rule above), `true` (always; warns once when the probe
says it is slow here) or `false`. The same decision drives training autocast, batched inference
and the compute dtype of 4-bit (QLoRA) layers. The environment variable TASKTUNE_CPU_BF16_SPEEDUP,
set to a number, replaces the probe's figure: the test suite pins it so that every CPU takes the
same path, and a user can pin it to compare runs across machines.

Example:
    p = decide_bf16("auto")      # Precision(bf16=False, device='cpu', speedup=0.007, ...)
    TrainingArguments(bf16=p.bf16, ...)
"""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import asdict, dataclass

from tasktune.errors import UserError

log = logging.getLogger("tasktune")
BF16_MIN_SPEEDUP = 1.3   # bf16 must beat fp32 by this factor on the probe to be turned on
PROBE_SIZE = 256         # n of the n x n x n matmul probe (34 MFLOP: ~0.3 ms fp32, ~40 ms emulated bf16)
PROBE_BUDGET_S = 0.02    # repeat each dtype until this much time is spent, to smooth out noise
PIN_ENV = "TASKTUNE_CPU_BF16_SPEEDUP"  # a number here replaces the probe (fp32 time / bf16 time)


@dataclass(frozen=True)
class Precision:
    bf16: bool                    # autocast in bfloat16
    setting: str                  # train.bf16 as configured: auto / true / false
    device: str                   # cuda / cpu
    reason: str                   # one line for logs and env.json
    speedup: float | None = None  # CPU probe: fp32 time / bf16 time (>1: bf16 faster)
    cpu_capability: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _time_matmul(dtype, budget: float, give_up_after: float) -> float:
    """Seconds per PROBE_SIZE^3 matmul in `dtype` (best of the repeats within `budget`)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
    b = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=gen).to(dtype)
    torch.mm(a, b)  # warm-up: first calls pick kernels and allocate
    best, spent = float("inf"), 0.0
    while spent < budget:
        start = time.perf_counter()
        torch.mm(a, b)
        took = time.perf_counter() - start
        best, spent = min(best, took), spent + took
        if took > give_up_after:  # hopelessly slow: one sample says enough
            break
    return best


def _pinned() -> str:
    return os.environ.get(PIN_ENV, "").strip()


@functools.lru_cache(maxsize=1)
def cpu_bf16_speedup() -> float:
    """fp32 time / bf16 time of a 256^3 matmul on one core of this CPU (cached per process).

    One thread: a busy machine (another process on the other core) stalls multi-threaded kernels
    at their barriers and can make the fast dtype look slow; one core compares the units themselves.
    With TASKTUNE_CPU_BF16_SPEEDUP set (e.g. 0.01: take the fp32 path; 4: the bf16 one), its number.
    """
    import torch

    pinned = _pinned()
    if pinned:
        try:
            return float(pinned)
        except ValueError:
            raise UserError(f"{PIN_ENV}={pinned!r} is not a number: unset it, or give the bf16 speed-up to assume "
                            "(0.01 keeps fp32, 4 turns bf16 on)") from None

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fp32 = _time_matmul(torch.float32, PROBE_BUDGET_S, float("inf"))
        bf16 = _time_matmul(torch.bfloat16, PROBE_BUDGET_S, give_up_after=20 * fp32)
    finally:
        torch.set_num_threads(threads)
    return fp32 / bf16


def _setting(value) -> str:
    return value if isinstance(value, str) else ("true" if value else "false")


@functools.lru_cache(maxsize=8)
def decide_bf16(setting="auto") -> Precision:
    """Whether to autocast in bf16 for `train.bf16` = auto / true / false on this machine."""
    import torch

    setting = _setting(setting)
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(0)
        if setting == "true" and not supported:
            raise UserError(f"train.bf16 is true but this GPU ({name}) has no bf16 support; "
                            "set train.bf16=auto (fp32 here) or false")
        use = supported if setting == "auto" else setting == "true"
        return Precision(use, setting, "cuda", f"{name}: bf16 {'supported' if supported else 'not supported'}")
    capability = torch.backends.cpu.get_cpu_capability()
    if setting == "false":
        return Precision(False, setting, "cpu", "train.bf16 is false", None, capability)
    speedup = round(cpu_bf16_speedup(), 3)
    fast = speedup >= BF16_MIN_SPEEDUP
    why = (f"CPU {capability}: bf16 matmul {speedup:.3g}x the speed of fp32 "
           f"({'bf16 units' if fast else 'no bf16 units'}"
           f"{f', pinned by {PIN_ENV}' if _pinned() else ''})")
    if setting == "true" and not fast:
        log.warning("train.bf16 is true, but bf16 is %.3gx the speed of fp32 on this CPU (%s, no bf16 units): "
                    "training will be about %.0fx slower; set train.bf16=auto", speedup, capability,
                    1 / max(speedup, 1e-6))
    return Precision(fast if setting == "auto" else True, setting, "cpu", why, speedup, capability)


def autocast_dtype(setting="auto"):
    """torch.bfloat16 where `decide_bf16(setting)` says so, else None (stay in fp32)."""
    import torch

    return torch.bfloat16 if decide_bf16(setting).bf16 else None
