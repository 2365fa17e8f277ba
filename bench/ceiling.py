"""Benchmark (not a test): the speed ratio against a peer that arithmetic allows, at equal FLOP efficiency.

Issue 14 asks for 3x a plain transformers.Trainer peer (classification) and issue 12 for 3x LLaMA-Factory (SFT),
on the same model, rows, LoRA, batch and steps. A ratio can come from doing less work or from doing the same
work faster. This script counts the work: matmul FLOPs per training row of each side, from gemma-3-270m's
config and the benchmarks' own rows as tasktune tokenises them (`bench/compare.py`'s 200 ChnSentiCorp rows,
`bench/sft.py`'s peer rows), and prints their ratio: the speed ratio if both sides ran their FLOPs equally
fast. A measured ratio above it means tasktune is also the faster runner per FLOP; below it, the slower one.

Counted per token and layer (A = heads x head dim, P = the layer's linear weights, r = LoRA rank):
- forward: 2P, attention 4 x ctx x A (QK^T and AV), LoRA 2 r (in + out) per adapted linear map;
- backward, only in layers at or above the lowest adapted one (frozen weights get no gradient, and nothing
  below the lowest adapter needs one): 2P to the activations, attention 8 x ctx x A, LoRA 4 r (in + out);
- the LM head (hidden x vocabulary) wherever a loss or score reads it: 2 h V forward, 2 h V backward.
ctx is the sequence length the attention kernel runs over: with a mask (padding, or the block-diagonal mask
of packed rows) PyTorch's CPU kernels compute the whole T x T product, so ctx = T for every token.
Not counted: norms, activations, softmax and cross-entropy (memory-bound, a few percent of a step here;
LLaMA-Factory's cross-entropy over 262k logits at every position is larger, see RESULTS).

Run: python bench/ceiling.py [--out bench/ceiling.json]   (reads ../shared/data; skips a suite without it)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def shape(config) -> dict:
    """Per-layer sizes of a decoder config: linear weights P, attention width A, LoRA in+out sum, head h x V."""
    h, inter = config.hidden_size, config.intermediate_size
    a = config.num_attention_heads * config.head_dim
    kv = config.num_key_value_heads * config.head_dim
    maps = [(h, a), (h, kv), (h, kv), (a, h), (h, inter), (h, inter), (inter, h)]  # q k v o gate up down
    return {"P": sum(i * o for i, o in maps), "A": a, "lora_io": sum(i + o for i, o in maps),
            "layers": config.num_hidden_layers, "head": h * config.vocab_size}


def row_flops(s: dict, tokens: int, ctx: int, scored: int, r: int = 8, lowest_adapted: int = 0) -> float:
    """Matmul FLOPs of one training row of `tokens` tokens, each attending over `ctx` (0: attention not counted),
    the head at `scored` positions, LoRA rank `r` on every linear map of layers >= `lowest_adapted` (see the
    module docstring)."""
    adapted = s["layers"] - lowest_adapted
    forward = s["layers"] * (2 * s["P"] + 4 * ctx * s["A"]) + adapted * 2 * r * s["lora_io"]
    backward = adapted * (2 * s["P"] + 8 * ctx * s["A"] + 4 * r * s["lora_io"])
    return tokens * (forward + backward) + scored * 4 * s["head"]


def features(config_path: str, overrides: list[str]) -> list[dict]:
    """The training features tasktune makes of a config's rows (tokenised exactly as a run tokenises them)."""
    from tasktune.config import load_config
    from tasktune.data.dataset import load_splits
    from tasktune.models.loading import load_tokenizer, resolve_model
    from tasktune.tasks import get_task

    cfg = load_config(config_path, overrides)
    task = get_task(cfg.task.name)
    splits = load_splits(cfg, task)
    return task.prepare(splits.train, load_tokenizer(resolve_model(cfg.model.name)), cfg, splits.state)


def classification(s: dict, out: Path) -> dict:
    """bench/compare.py's rows: the peer pads each row to 128 (SEQ_CLS head), tasktune packs 8 rows into one
    sequence and reads the LM head at one position per row; the same LoRA on all layers, or on the top 9."""
    import compare

    files = compare.split(out, 200, 200)
    feats = features(None, [*compare.TASKTUNE, *compare.TOOLS["tasktune-label"], f"data.train={files[0]}",
                            "data.eval=null"])
    lengths = [len(f.get("input_ids") or f["prompt_ids"]) for f in feats]  # label scoring: the prompt only
    order = list(range(len(lengths)))
    random.Random(0).shuffle(order)  # the Trainer's shuffle is seeded too; any order gives the same sum
    packs = [sum(lengths[i] for i in order[k:k + 8]) for k in range(0, len(order), 8)]
    peer = row_flops(s, compare.MAX_LEN, compare.MAX_LEN, 0)  # every row padded to the same length

    def packed(lowest: int, attention: bool = True) -> float:
        per_batch = [row_flops(s, t, t if attention else 0, 0, lowest_adapted=lowest) for t in packs]
        return sum(per_batch) / len(lengths) + 4 * s["head"]  # one scored position per row

    peer_linear = row_flops(s, compare.MAX_LEN, 0, 0)
    return {"rows": len(lengths), "tokens_per_row": statistics.mean(lengths), "packed_length": statistics.mean(packs),
            "peer_gflop_per_row": peer / 1e9, "tasktune_gflop_per_row": packed(0) / 1e9,
            "ceiling_same_lora": peer / packed(0),
            "ceiling_same_lora_without_attention": peer_linear / packed(0, attention=False),
            "tasktune_gflop_per_row_lora_top9": packed(s["layers"] // 2) / 1e9,
            "ceiling_lora_top9": peer / packed(s["layers"] // 2),
            "ceiling_lora_top9_without_attention": peer_linear / packed(s["layers"] // 2, attention=False),
            "tasktune_gflop_per_row_without_attention": packed(0, attention=False) / 1e9,
            # what the same rows would cost if each attended only within itself (a kernel skipping masked blocks)
            "tasktune_gflop_per_row_attention_within_rows":
                statistics.mean(row_flops(s, t, t, 1) for t in lengths) / 1e9}


def sft(s: dict, out: Path) -> dict:
    """bench/sft.py's peer rows (cut-off 512, batch 2): LLaMA-Factory computes the LM head at every position,
    tasktune at the answer positions only; both pad a batch of 2 to its longer row; the same LoRA."""
    import sft as sft_bench

    files = sft_bench.split(out, 40, 200, 0)
    rows = json.loads(files[1].read_text())[:64]
    (out / "sft_rows.json").write_text(json.dumps(rows, ensure_ascii=False))
    feats = features(str(sft_bench.CONFIG), [*sft_bench.PEER_LORA, f"data.train={out / 'sft_rows.json'}",
                                             "data.eval=null", "data.max_train_rows=null"])
    pairs = [feats[k:k + 2] for k in range(0, len(feats), 2)]
    peer = tasktune = peer_linear = tasktune_linear = 0.0
    for pair in pairs:
        t = max(len(f["input_ids"]) for f in pair)
        for f in pair:
            answer = sum(1 for x in f["labels"] if x != -100)
            peer += row_flops(s, t, t, t)  # logits at every position of the padded row
            tasktune += row_flops(s, t, t, answer)
            peer_linear += row_flops(s, t, 0, t)
            tasktune_linear += row_flops(s, t, 0, answer)
    return {"rows": len(feats), "tokens_per_row": statistics.mean(len(f["input_ids"]) for f in feats),
            "answer_tokens_per_row": statistics.mean(sum(1 for x in f["labels"] if x != -100) for f in feats),
            "peer_gflop_per_row": peer / len(feats) / 1e9, "tasktune_gflop_per_row": tasktune / len(feats) / 1e9,
            "ceiling_same_lora": peer / tasktune, "ceiling_same_lora_without_attention": peer_linear / tasktune_linear}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/ceiling.json")
    p.add_argument("--runs", default="bench_runs/ceiling", help="scratch folder for the split files")
    a = p.parse_args()
    from transformers import AutoConfig

    from tasktune.models.loading import resolve_model

    s = shape(AutoConfig.from_pretrained(resolve_model("gemma-3-270m")))
    out = Path(a.runs)
    out.mkdir(parents=True, exist_ok=True)
    result = {"model": "gemma-3-270m", "shape": s}
    for name, fn in (("classification", classification), ("sft", sft)):
        try:
            result[name] = fn(s, out)
        except FileNotFoundError as e:
            print(f"skipping {name}: its data is missing ({e})")
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
