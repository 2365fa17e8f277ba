"""Bi-encoder embeddings from any transformers backbone: pooling, per-dimension standardisation, L2 norm.

The backbone is a plain `AutoModel` (LoRA through peft as for every task); what turns its hidden
states into an embedding lives here, as plain functions of the batch and the task state:

- pooling `mean` (real tokens), `cls` (first token) or `last` (last real token; batches are padded
  on the right);
- optional standardisation: (pooled - mean) / std per dimension with statistics measured once on
  training texts (`measure_standardizer`). gemma-3-270m's final norm multiplies a few dimensions by
  up to ~300: without it those dimensions dominate every cosine similarity. Pooling is linear (or a
  selection), so standardising the pooled vector equals pooling standardised token states;
- L2 normalisation: cosine similarity is an inner product.

`save_sentence_transformer` writes the same pipeline as sentence-transformers modules (Transformer,
Pooling, a Dense layer holding the standardisation, Normalize), so `SentenceTransformer(folder)`
gives the embeddings tasktune gives.

Example:
    emb = embed(model, tok, ["what is BM25?"], pooling="mean", stats=None, max_length=128)   # (1, hidden)
"""

from __future__ import annotations

import json
from pathlib import Path

ST_POOLING = {"mean": "mean", "cls": "cls", "last": "lasttoken"}


def embeddings(model, input_ids, attention_mask, pooling: str, stats: dict | None):
    """L2-normalised float32 embeddings of a padded batch (gradients flow when the model trains)."""
    import torch

    from tasktune.models.heads import pooled

    hidden = model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    vec = pooled(hidden.float(), attention_mask, pooling)
    if stats:
        mean = torch.tensor(stats["mean"], device=vec.device)
        std = torch.tensor(stats["std"], device=vec.device)
        vec = (vec - mean) / std
    return torch.nn.functional.normalize(vec, dim=-1)


def embeddings_grouped(model, input_ids, attention_mask, pooling: str, stats: dict | None, rows: int | None):
    """`embeddings` of a right-padded batch computed in groups of `rows` rows of similar length, each cut to
    its own longest row, returned in the batch's order (None or rows >= batch: one forward).

    Why: a training batch pads every passage to the longest one; on CPU, forward + backward cost what the
    padded tokens cost, so sorting 16 passages by length into two groups of 8 cuts the work (gemma-3-270m +
    LoRA on CMRC chunks: 1.22x sentence-transformers' trainer, which pads each column separately;
    bench/RESULTS.md). The embeddings are the same as one padded forward's (right padding, masked
    attention): only padding is skipped. Smaller groups lose more to small matrix products than
    they save.
    Example: embeddings_grouped(model, ids, mask, "mean", None, rows=8)  # (len(ids), hidden)
    """
    import torch

    if not rows or rows >= len(input_ids):
        return embeddings(model, input_ids, attention_mask, pooling, stats)
    lengths = attention_mask.sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for group in order.split(rows):
        width = int(lengths[group].max())
        parts.append(embeddings(model, input_ids[group, :width], attention_mask[group, :width], pooling, stats))
    return torch.cat(parts)[torch.argsort(order)]  # back to the batch's order


def tokenize(tokenizer, texts: list[str], max_length: int) -> list[dict]:
    """One feature {input_ids, attention_mask} per text, cut at max_length tokens."""
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]} for i in range(len(texts))]


def embed(model, tokenizer, texts: list[str], pooling: str, stats: dict | None, max_length: int,
          batch_size: int = 32, bf16="auto", desc: str = "embed"):
    """A (len(texts), hidden) float32 numpy array of embeddings, computed in length-sorted batches."""
    import numpy as np
    from transformers import DataCollatorWithPadding

    from tasktune.engine.inference import batched_outputs

    pad = DataCollatorWithPadding(tokenizer)
    out = batched_outputs(model, tokenize(tokenizer, texts, max_length), pad,
                          lambda m, b: embeddings(m, b["input_ids"], b["attention_mask"], pooling, stats),
                          batch_size, bf16=bf16, desc=desc)
    return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def measure_standardizer(model, tokenizer, texts: list[str], pooling: str, max_length: int,
                         batch_size: int = 32) -> dict:
    """Per-dimension mean and std of the pooled (un-normalised) vectors of `texts`."""
    import numpy as np
    import torch
    from transformers import DataCollatorWithPadding

    from tasktune.engine.inference import batched_outputs
    from tasktune.models.heads import pooled

    def forward(m, b):
        hidden = m(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
        return pooled(hidden.float(), b["attention_mask"], pooling)

    with torch.no_grad():
        vecs = np.asarray(batched_outputs(model, tokenize(tokenizer, texts, max_length),
                                          DataCollatorWithPadding(tokenizer), forward, batch_size,
                                          desc="standardizer"), dtype=np.float64)
    std = vecs.std(0)
    std = np.maximum(std, 1e-2 * std.mean() + 1e-6)  # a dead dimension is not blown up
    return {"mean": vecs.mean(0).round(6).tolist(), "std": std.round(6).tolist(), "texts": len(texts)}


def save_sentence_transformer(folder: str | Path, hidden_size: int, pooling: str, stats: dict | None,
                              max_length: int) -> None:
    """Write sentence-transformers' module files into `folder`, which already holds the backbone (full
    weights or a peft adapter) and tokenizer: Transformer (the folder itself), Pooling, Dense (the
    standardisation, identity activation), Normalize."""
    import torch
    from sentence_transformers.models import Dense, Normalize, Pooling

    folder = Path(folder)
    (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    pool = Pooling(hidden_size, pooling_mode=ST_POOLING[pooling])
    pool.save(str(folder / "1_Pooling"))
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if stats:
        dense = Dense(hidden_size, hidden_size, bias=True, activation_function=torch.nn.Identity())
        std = torch.tensor(stats["std"], dtype=torch.float32)
        with torch.no_grad():
            dense.linear.weight.copy_(torch.diag(1 / std))
            dense.linear.bias.copy_(-torch.tensor(stats["mean"], dtype=torch.float32) / std)
        (folder / "2_Dense").mkdir(exist_ok=True)
        dense.save(str(folder / "2_Dense"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    modules.append({"idx": len(modules), "name": str(len(modules)), "path": f"{len(modules)}_Normalize",
                    "type": "sentence_transformers.models.Normalize"})
    (folder / modules[-1]["path"]).mkdir(exist_ok=True)
    Normalize().save(str(folder / modules[-1]["path"]))
    (folder / "modules.json").write_text(json.dumps(modules, indent=2) + "\n")
    # Plain text in, token states out, stated outright: a sentence-transformers Transformer built on a folder
    # whose tokenizer has a chat template (gemma's) renders every text through it, which tasktune never trains on.
    (folder / "sentence_bert_config.json").write_text(json.dumps({
        "transformer_task": "feature-extraction", "max_seq_length": max_length, "do_lower_case": False,
        "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
        "module_output_name": "token_embeddings"}) + "\n")
