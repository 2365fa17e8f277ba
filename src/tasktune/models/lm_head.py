"""LM-head trimming: language-model logits only at the positions a loss or score needs.

For decoder tasks whose scored positions differ from row to row (SFT: the response tokens after
prompts of different lengths). With a large vocabulary the output head dominates cost: gemma-3-270m
has 262,144 entries, so full logits for 8 x 2048 tokens take ~17 GB. Running the backbone once and
applying the head only where needed makes that a few MB; it is a memory requirement, not only a
speed-up. transformers' `logits_to_keep` keeps the same positions for every row of a batch, which is
enough where rows are aligned (label scoring left-pads so every label word ends at the same index);
`logits_at` takes any (row, position) pairs.

Example:
    logits = logits_at(model, batch["input_ids"], batch["attention_mask"], rows, cols)   # (k, vocab)
"""

from __future__ import annotations


def _unwrap(model):
    # A peft wrapper forwards attribute access, but the backbone/head split lives on the base model.
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def logits_at(model, input_ids, attention_mask, rows, cols, **backbone_kwargs):
    """LM logits (float32) at positions (rows[i], cols[i]) of the batch: shape (len(rows), vocab).

    `model` is a transformers causal LM (optionally peft-wrapped); LoRA layers inside the backbone
    and head still apply because the wrapped modules are the ones called.
    """
    if hasattr(model, "no_sync"):  # DistributedDataParallel (several processes)
        return _logits_through_ddp(model, input_ids, attention_mask, rows, cols, **backbone_kwargs)
    base = _unwrap(model)
    hidden = base.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False,
                             **backbone_kwargs).last_hidden_state
    picked = hidden[rows, cols]
    logits = base.get_output_embeddings()(picked).float()
    cap = getattr(base.config, "final_logit_softcapping", None)
    if cap:  # models that soft-cap their logits (gemma 2) must be capped here too
        logits = cap * (logits / cap).tanh()
    return logits


def _logits_through_ddp(model, input_ids, attention_mask, rows, cols, **backbone_kwargs):
    """logits_at for a DDP-wrapped model. DDP syncs gradients only for a forward through the wrapper, so the
    backbone/head split above cannot be used; transformers' `logits_to_keep` (a tensor of positions, the same
    for every row) keeps the union of the positions needed, which is bounded by the batch's response lengths."""
    import torch

    keep, where = torch.unique(cols, return_inverse=True)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=keep,
                   **backbone_kwargs).logits
    return logits[rows, where].float()


def next_token_positions(labels):
    """(rows, cols, targets) for causal-LM loss: the logit at t predicts token t+1 where labels[t+1] != -100.

    Example: labels [[-100, -100, 7, 9]] -> rows [0, 0], cols [1, 2], targets [7, 9]
    """
    shifted = labels[:, 1:]
    rows, cols = (shifted != -100).nonzero(as_tuple=True)
    return rows, cols, shifted[rows, cols]


# Rows up to which the LM head runs in fp32 under CPU bf16 autocast. Why: autocast casts a frozen weight afresh
# at every call (it caches casts only of weights that train), and gemma's tied 262k x 640 head is 168M values:
# the cast alone took ~0.2 s of a 0.7 s label-scoring step on a CPU with bf16 units (bench/step_profile.py),
# while the fp32 product costs ~3 ms per row there. Past ~64 rows the bf16 product wins again.
FP32_HEAD_MAX_ROWS = 64


def _few_rows_in_fp32(head, hidden):
    """nn.Linear.forward of `head`, skipping CPU bf16 autocast for at most FP32_HEAD_MAX_ROWS rows."""
    import torch

    rows = hidden.numel() // hidden.shape[-1]
    if hidden.device.type == "cpu" and torch.is_autocast_enabled("cpu") and rows <= FP32_HEAD_MAX_ROWS:
        with torch.autocast("cpu", enabled=False):
            return torch.nn.functional.linear(hidden.float(), head.weight, head.bias)
    return torch.nn.Linear.forward(head, hidden)


def fp32_head_for_few_rows(model):
    """Make `model`'s output head skip CPU bf16 autocast when it is applied to at most FP32_HEAD_MAX_ROWS rows.

    Returns `model`. The head is an nn.Linear with an fp32 weight (else nothing changes); its results are fp32
    (more exact than the bf16 product, the same values as without autocast). Where autocast is off, on a GPU, or
    for more rows, the head runs as before. The forward is bound to the head (a copy of the model rebinds it).

    Example: model = fp32_head_for_few_rows(AutoModelForCausalLM.from_pretrained(path))
    """
    import types

    import torch

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if type(head) is torch.nn.Linear and head.weight.dtype == torch.float32 and "forward" not in vars(head):
        head.forward = types.MethodType(_few_rows_in_fp32, head)
    return model
