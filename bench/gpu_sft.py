"""Benchmark (not a test): SFT training throughput of `tasktune train` on a GPU, beside a plain Trainer peer.

The shape of the MUG title job at GPU scale: long prompts (a meeting, median ~700 tokens, cut at
model.max_length 1024) and short responses (a title, ~10 tokens). Random Qwen2.5-0.5B-shaped model
(vocabulary 151,936: the LM head is what a full-logits loss pays for at every prompt position) and a
BPE tokenizer trained here (bench/gpu_throughput.py builds both; no model hub).

Variants (same model, token ids, batch, optimizer steps, LoRA r 8 all-linear, bf16):
- peer: `transformers.Trainer` + AutoModelForCausalLM + DataCollatorForSeq2Seq (dynamic padding),
  loss over the full logits (what LLaMA-Factory and the official examples do), fed tasktune's own
  tokenised features so both sides see the same ids;
- tasktune sft, padded (logits only at response positions);
- tasktune sft, train.packing (one row per batch, position ids restart per example), with sdpa and
  with model.attn_implementation=flex_attention (run twice: the first includes compiling it).
Each: samples/s, real tokens/s, MFU (4N per real token, N non-embedding parameters) against an 8192^3
bf16 matmul measured in the same run, peak GPU memory.

Run: PYTHONPATH=src python bench/gpu_sft.py --out bench/gpu_sft.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gpu_throughput import (WORDS, _peak_memory, _reset_memory, build_model, finish, matmul_peak,  # noqa: E402
                            non_embedding_params)

MAX_LENGTH = 1024


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Alpaca rows: a long-tailed 'meeting' (lognormal words, median ~700) and a 5-15 word 'title'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = max(50, min(3000, int(rng.lognormvariate(6.55, 0.5))))
        rows.append({"instruction": "Give this meeting a title.",
                     "input": " ".join(rng.choice(WORDS) for _ in range(words)),
                     "output": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))})
    return rows


def _cfg(model: str, data: Path, out: Path, steps: int, batch: int, extra: list[str]):
    from tasktune.config import load_config

    return load_config(None, ["task=sft", f"model.name={model}", f"model.max_length={MAX_LENGTH}",
                              f"data.train={data}", "data.eval=null", f"output_dir={out}", f"train.max_steps={steps}",
                              f"train.batch_size={batch}", "train.learning_rate=1e-4", "train.logging_steps=5",
                              "data.cache_features=false",
                              "model.lora={r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}", *extra])


def features(model: str, rows: list[dict], cfg) -> list[dict]:
    """tasktune's tokenised training examples ({input_ids, labels}), the ids both sides train on."""
    from tasktune.tasks.sft import SFT

    task = SFT()
    tok = task.build_model(model, cfg, {}, for_training=False)[1]
    return task.prepare([task.parse_row(r, cfg, None) for r in rows], tok, cfg, {})


def tasktune_run(model: str, data: Path, out: Path, steps: int, batch: int, extra: list[str]) -> dict:
    from tasktune.run import train

    _reset_memory()
    train(_cfg(model, data, out, steps, batch, extra), overwrite=True)
    history = json.loads((out / "metrics_history.json").read_text())
    end = next(h for h in history if "train_runtime" in h)
    return {"train_runtime_s": end["train_runtime"], "peak_gpu_gib": _peak_memory()}


def peer_run(model: str, feats: list[dict], steps: int, batch: int) -> dict:
    """Plain Trainer: full logits at every position, loss masked to the response by -100 labels."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer,
                              TrainingArguments)

    _reset_memory()
    tok = AutoTokenizer.from_pretrained(model)
    tok.pad_token = tok.pad_token or tok.eos_token
    net = AutoModelForCausalLM.from_pretrained(model, dtype="auto")
    net = get_peft_model(net, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=1e-4, bf16=torch.cuda.is_available(), report_to="none",
                             save_strategy="no", logging_steps=5, disable_tqdm=True, remove_unused_columns=False)
    collator = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100)
    result = Trainer(model=net, args=args, train_dataset=feats, data_collator=collator).train()
    return {"train_runtime_s": result.metrics["train_runtime"], "peak_gpu_gib": _peak_memory()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--layers", type=int, help="fewer layers than the real shape (a quick check)")
    p.add_argument("--no-flex", action="store_true", help="skip the flex_attention variants (their compile is slow)")
    p.add_argument("--out", default="bench/gpu_sft.json")
    a = p.parse_args()
    import torch

    work = Path(tempfile.mkdtemp())
    rows = make_rows(a.steps * a.batch)
    data = work / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = build_model(work / "model", [r["input"] for r in rows[:200]] + [r["output"] for r in rows[:200]],
                        a.layers, bpe_vocab=1000)  # enough merges for one token per word
    cfg = _cfg(model, data, work / "x", a.steps, a.batch, [])
    feats = features(model, rows, cfg)
    tokens = sum(len(f["input_ids"]) for f in feats)
    peak, n = matmul_peak(), non_embedding_params(model)
    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
              "torch": torch.__version__, "steps": a.steps, "batch": a.batch, "max_length": MAX_LENGTH,
              "tokens": tokens, "response_tokens": sum(sum(t != -100 for t in f["labels"]) for f in feats),
              "matmul_peak_tflops": round(peak, 1)}
    print({k: v for k, v in result.items()}, flush=True)
    flex = ["train.packing=true", "model.attn_implementation=flex_attention"]
    variants = {
        "peer: Trainer + CAUSAL_LM + LoRA, dynamic padding, full logits": lambda: peer_run(model, feats, a.steps, a.batch),
        "tasktune sft, padded": lambda: tasktune_run(model, data, work / "pad", a.steps, a.batch, []),
        "tasktune sft, packed (sdpa)": lambda: tasktune_run(model, data, work / "pack", a.steps, a.batch,
                                                            ["train.packing=true"]),
        "tasktune sft, packed, flex_attention (compiling)": lambda: tasktune_run(model, data, work / "f1", a.steps,
                                                                                 a.batch, flex),
        "tasktune sft, packed, flex_attention": lambda: tasktune_run(model, data, work / "f2", a.steps, a.batch, flex),
    }
    if a.no_flex or not torch.cuda.is_available():  # flex attention has no backward pass on CPUs
        variants = {k: v for k, v in variants.items() if "flex" not in k}
    table = {}
    for name, fn in variants.items():
        try:
            got = fn()
        except Exception as e:  # one failing variant must not lose the others' figures
            table[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(name, table[name], flush=True)
            continue
        seconds = got["train_runtime_s"]
        table[name] = {"samples_per_s": round(a.steps * a.batch / seconds, 2), "tokens_per_s": round(tokens / seconds),
                       "mfu_pct": round(100 * 4 * n * tokens / seconds / (peak * 1e12), 2),
                       "peak_gpu_gib": round(got["peak_gpu_gib"], 2), "train_runtime_s": round(seconds, 2)}
        print(name, table[name], flush=True)
        Path(a.out).write_text(json.dumps({**result, "variants": table}, indent=2) + "\n")  # a cut run keeps these
    finish(result, table, a.out)


if __name__ == "__main__":
    main()
