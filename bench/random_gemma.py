"""Make a gemma-3-270m-shaped model with random weights (its real config and tokenizer), for timing.

Speed needs no trained weights, and the random copy can travel where the 1 GB converted weights
cannot (the GPU machine takes 64 MiB): copy the converted folder's config and tokenizer files, then
build the weights where the timing runs. Used for the quickstart timing on 2 cores of a CPU with
bf16 units (bench/RESULTS.md).

Run: python bench/random_gemma.py SOURCE_DIR OUT_DIR   # SOURCE_DIR: a folder with config.json + tokenizer
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def main(source: str, out: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    Path(out).mkdir(parents=True, exist_ok=True)
    for name in FILES:
        if (Path(source) / name).is_file() and Path(source).resolve() != Path(out).resolve():
            shutil.copy(Path(source) / name, Path(out) / name)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(out)).save_pretrained(out)
    print(f"random {AutoConfig.from_pretrained(out).model_type} weights -> {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
