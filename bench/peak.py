"""This machine's matmul FLOP/s per dtype: the peak that model FLOPs utilisation (MFU) is measured against.

Square matmuls of --size (default 2048) in float32 and bfloat16 (plain, no autocast), best of --repeats
after a warm-up, on CUDA when there is one, else on the CPU with torch's threads. Prints JSON.

Run: python bench/peak.py [--size 2048] [--out bench/peak.json]
"""

from __future__ import annotations

import argparse
import json
import time


def matmul_flops(dtype, size: int = 2048, repeats: int = 5, device: str | None = None) -> float:
    """Best-of-`repeats` FLOP/s of a (size x size) @ (size x size) matmul in `dtype` on `device`."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    a @ b  # warm-up: kernel selection, thread pool start
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def peak(size: int = 2048, repeats: int = 5) -> dict:
    """{'device', 'cpu_capability', 'threads', 'float32_gflops', 'bfloat16_gflops'} of this machine."""
    import torch

    cuda = torch.cuda.is_available()
    # bf16 on a CPU without bf16 units is ~100x slower: a smaller matmul keeps the probe short.
    out = {"device": torch.cuda.get_device_name() if cuda else "cpu",
           "cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    for dtype in (torch.float32, torch.bfloat16):
        n = size if cuda or dtype == torch.float32 else min(size, 512)
        out[f"{str(dtype).split('.')[1]}_gflops"] = round(matmul_flops(dtype, n, repeats) / 1e9, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out")
    a = p.parse_args()
    result = peak(a.size, a.repeats)
    print(json.dumps(result))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
