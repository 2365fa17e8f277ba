"""Benchmark (not a test): training throughput of `tasktune train` on a GPU, beside a plain Trainer peer.

Throughput needs no trained weights, so the models are random, built from a real config shape
(Qwen2.5-0.5B: hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocabulary 151,936), with a
byte-level BPE tokenizer trained here on the synthetic data (no model hub). Rows are synthetic
reviews whose token lengths follow a long tail like the quickstart's (median ~40, p99 ~260 tokens,
cut at 128), labelled at random (speed only: no accuracy is claimed).

Variants (same model, rows, batch, optimizer steps; bf16 where the GPU has it):
- peer: plain `transformers.Trainer` + AutoModelForSequenceClassification + LoRA, padded to 128
  (the `run_classification.py` way);
- tasktune head: `tasktune train` task.method=head (dynamic padding);
- tasktune label_scoring, padded and packed (`train.packing`).
Each prints samples/s, real tokens/s, model FLOPs utilisation against a matmul peak measured in
the same run, and peak GPU memory. Also reports the CPU's bf16 decision of this host (the probe).

Run: PYTHONPATH=src python bench/gpu_throughput.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

SHAPE = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 2048, "tie_word_embeddings": True}
WORDS = ["room", "clean", "staff", "breakfast", "noisy", "bed", "price", "location", "great", "dirty", "view",
         "service", "quiet", "small", "friendly", "old", "new", "recommend", "never", "again"]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Reviews with a long-tailed length (lognormal words) and random labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = max(3, min(400, int(rng.lognormvariate(3.4, 0.8))))
        rows.append({"id": f"r{i}", "text": " ".join(rng.choice(WORDS) for _ in range(words)),
                     "label": rng.choice(["negative", "positive"])})
    return rows


def build_model(folder: Path, texts: list[str], layers: int | None, bpe_vocab: int = 300) -> str:
    """A random Qwen2.5-0.5B-shaped causal LM (and a BPE tokenizer trained on `texts`) saved as a folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts + ["review: sentiment: good bad"], trainers.BpeTrainer(
        vocab_size=bpe_vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    shape = {**SHAPE, **({"num_hidden_layers": layers} if layers else {})}
    torch.manual_seed(0)
    config = Qwen2Config(**shape, eos_token_id=fast.eos_token_id, bos_token_id=fast.eos_token_id)
    Qwen2ForCausalLM(config).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32).save_pretrained(folder)
    fast.save_pretrained(folder)
    return str(folder)


def matmul_peak() -> float:
    """bf16 TFLOP/s of an 8192^3 matmul on this GPU (median of 10 after warm-up); nan without a GPU."""
    import torch

    if not torch.cuda.is_available():
        return float("nan")
    a, b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16), torch.randn(8192, 8192, device="cuda",
                                                                                     dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return 2 * 8192 ** 3 / sorted(times)[5] / 1e12


def count_tokens(model: str, rows: list[dict], max_length: int) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    return [min(len(ids), max_length) for ids in tok([r["text"] for r in rows])["input_ids"]]


def non_embedding_params(model: str) -> int:
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model)
    kv = c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
    per_layer = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv + 3 * c.hidden_size * c.intermediate_size
    return per_layer * c.num_hidden_layers


def tasktune_run(model: str, data: Path, out: Path, extra: list[str], steps: int, batch: int) -> dict:
    """`tasktune train` in-process for `steps` optimizer steps; wall time of the training loop and peak memory."""

    from tasktune.config import load_config
    from tasktune.run import train

    _reset_memory()
    cfg = load_config(None, ["task=classification", f"model.name={model}", "model.max_length=128",
                             f"data.train={data}", "data.eval=null", f"output_dir={out}", f"train.max_steps={steps}",
                             f"train.batch_size={batch}", "train.learning_rate=1e-4", "train.logging_steps=5",
                             "model.lora={r: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}", *extra])
    train(cfg, overwrite=True)
    history = json.loads((out / "metrics_history.json").read_text())
    end = next(h for h in history if "train_runtime" in h)
    return {"train_runtime_s": end["train_runtime"], "peak_gpu_gib": _peak_memory()}


def peer_run(model: str, rows: list[dict], steps: int, batch: int) -> dict:
    """The plain Trainer way: sequence-classification head + LoRA, every row padded to 128, bf16."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments

    _reset_memory()
    tok = AutoTokenizer.from_pretrained(model)
    tok.pad_token = tok.eos_token
    net = AutoModelForSequenceClassification.from_pretrained(model, num_labels=2, dtype="auto")
    net.config.pad_token_id = tok.pad_token_id
    net = get_peft_model(net, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="SEQ_CLS"))
    enc = tok([r["text"] for r in rows], truncation=True, max_length=128, padding="max_length")
    feats = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
              "labels": int(r["label"] == "positive")} for i, r in enumerate(rows)]
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=batch, max_steps=steps,
                             learning_rate=1e-4, bf16=torch.cuda.is_available(), report_to="none", save_strategy="no", logging_steps=5,
                             disable_tqdm=True)
    result = Trainer(model=net, args=args, train_dataset=feats).train()
    return {"train_runtime_s": result.metrics["train_runtime"], "peak_gpu_gib": _peak_memory()}


def _reset_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def cpu_bf16_decision() -> dict:
    """This host's CPU probe (GPU hidden), for the bf16-only-where-fast rule."""
    code = ("from tasktune.precision import decide_bf16; import json; "
            "print(json.dumps(decide_bf16('auto').as_dict()))")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {"error": out.stderr[-500:]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--layers", type=int, help="fewer layers than the real shape (a quick check)")
    p.add_argument("--out", default="bench/gpu_throughput.json")
    a = p.parse_args()
    import torch

    work = Path(tempfile.mkdtemp())
    rows = make_rows(a.steps * a.batch + a.batch)
    data = work / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    model = build_model(work / "model", [r["text"] for r in rows], a.layers)
    result = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "torch": torch.__version__, "shape": SHAPE,
              "steps": a.steps, "batch": a.batch, "cpu_bf16": cpu_bf16_decision()}
    peak = matmul_peak()
    result["matmul_peak_tflops"] = round(peak, 1)
    tokens = count_tokens(model, rows[:a.steps * a.batch], 128)
    n = non_embedding_params(model)
    variants = {
        "peer: Trainer + SEQ_CLS + LoRA, pad 128": lambda: peer_run(model, rows, a.steps, a.batch),
        "tasktune head": lambda: tasktune_run(model, data, work / "head", ["task.method=head"], a.steps, a.batch),
        "tasktune label_scoring": lambda: tasktune_run(model, data, work / "ls", _scoring(), a.steps, a.batch),
        "tasktune label_scoring packed": lambda: tasktune_run(model, data, work / "lsp", _scoring() + [
            "train.packing=true"], a.steps, a.batch),
        # Twice: the first run includes compiling the flex kernels; the second reuses them (same process).
        "tasktune label_scoring packed, flex_attention (compiling)": lambda: tasktune_run(
            model, data, work / "lspf", _scoring() + ["train.packing=true", "model.attn_implementation=flex_attention"],
            a.steps, a.batch),
        "tasktune label_scoring packed, flex_attention": lambda: tasktune_run(
            model, data, work / "lspf2", _scoring() + ["train.packing=true", "model.attn_implementation=flex_attention"],
            a.steps, a.batch),
    }
    if not torch.cuda.is_available():  # flex attention has no backward pass on CPUs
        variants = {k: v for k, v in variants.items() if "flex" not in k}
    table = {}
    for name, fn in variants.items():
        got = fn()
        samples = a.steps * a.batch
        seconds = got["train_runtime_s"]
        # LoRA: forward 2N + input gradients 2N per real token (frozen weights get no weight gradient).
        table[name] = {"samples_per_s": round(samples / seconds, 1), "tokens_per_s": round(sum(tokens) / seconds),
                       "mfu_pct": round(100 * 4 * n * sum(tokens) / seconds / (peak * 1e12), 2),
                       "peak_gpu_gib": round(got["peak_gpu_gib"], 2), "train_runtime_s": round(seconds, 2)}
        print(name, table[name], flush=True)
    finish(result, table, a.out)


def finish(result: dict, table: dict, out: str) -> None:
    """Each variant's speed over the first's (the peer), the JSON written, the table printed."""
    first = next(iter(table.values()))
    for m in table.values():
        if "samples_per_s" in m and "samples_per_s" in first:
            m["vs_peer"] = round(m["samples_per_s"] / first["samples_per_s"], 2)
    result["variants"] = table
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"| variant ({result['device']}) | samples/s | tokens/s | MFU % | peak GiB | x peer |")
    for name, m in table.items():
        print(f"| {name} | {m.get('samples_per_s')} | {m.get('tokens_per_s')} | {m.get('mfu_pct')} | "
              f"{m.get('peak_gpu_gib')} | {m.get('vs_peer')} |")


def _scoring() -> list[str]:
    return ["task.method=label_scoring", "task.prompt='review: {text} sentiment:'",
            "task.verbalizer={positive: ' good', negative: ' bad'}"]


if __name__ == "__main__":
    main()
