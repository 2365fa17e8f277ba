"""Batched inference shared by every task: length-sorted batches, bf16 autocast where fast, progress.

Sorting by length before batching wastes almost no compute on padding (outputs go back in input
order); it changes nothing about the results, unlike length grouping during training.

Example:
    probs = batched_outputs(model, feats, collate, lambda m, b: m(**b).logits.softmax(-1), batch_size=32)
"""

from __future__ import annotations


def feature_length(feature: dict) -> int:
    """A feature's length for sorting: its longest list (token ids under whichever name the task uses)."""
    return max((len(v) for v in feature.values() if isinstance(v, list)), default=0)


def batched_outputs(model, features: list[dict], collate, forward, batch_size: int = 32,
                    bf16: str | bool = "auto", desc: str = "predict") -> list:
    """`forward(model, batch)` for every feature as Python lists (one entry per feature), in input order.

    `forward` returns a tensor whose first dimension is the batch's features. `bf16` is the
    train.bf16 setting (auto / true / false): autocast where `precision.decide_bf16` says.
    """
    import torch
    from tqdm.auto import tqdm

    from tasktune.precision import decide_bf16

    model.eval()
    order = sorted(range(len(features)), key=lambda i: feature_length(features[i]))
    results: list = [None] * len(features)
    device = model.device
    autocast = decide_bf16(bf16).bf16
    bar = tqdm(total=len(features), desc=desc, unit="row", disable=len(features) < 2 * batch_size)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collate([features[i] for i in chunk]).items()}
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = forward(model, batch).float().tolist()
        for i, value in zip(chunk, out):
            results[i] = value
        bar.update(len(chunk))
    bar.close()
    return results
