"""Trimmed LM head gives exactly the full head's logits and loss at the chosen positions."""

from __future__ import annotations

import pytest


def test_trimmed_logits_and_loss_match_full_head(tiny_qwen):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasktune.models.lm_head import logits_at, next_token_positions

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen).eval()
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    batch = tok(["the room was good", "酒店 很 干净 and the staff"], return_tensors="pt", padding=True)
    labels = batch["input_ids"].clone()
    labels[batch["attention_mask"] == 0] = -100
    labels[:, :2] = -100  # prompt tokens carry no loss
    with torch.no_grad():
        full = model(**batch).logits.float()
        rows, cols, targets = next_token_positions(labels)
        trimmed = logits_at(model, batch["input_ids"], batch["attention_mask"], rows, cols)
    assert trimmed.shape == (len(rows), full.shape[-1])
    assert torch.allclose(trimmed, full[rows, cols], atol=1e-5)
    full_loss = F.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), labels[:, 1:].reshape(-1),
                                ignore_index=-100)
    assert F.cross_entropy(trimmed, targets).item() == pytest.approx(full_loss.item(), rel=1e-5)


def test_trimmed_head_sees_lora_layers(tiny_qwen):
    import torch
    from transformers import AutoModelForCausalLM

    from tasktune.config import LoraSettings
    from tasktune.models.lm_head import logits_at
    from tasktune.models.peft_adapters import apply_lora

    torch.manual_seed(0)
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraSettings(r=2), "CAUSAL_LM").eval()
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)  # make the adapter matter
    ids = torch.tensor([[5, 6, 7, 8]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        trimmed = logits_at(model, ids, mask, torch.tensor([0]), torch.tensor([3]))
    assert torch.allclose(trimmed, full[0, 3:4].float(), atol=1e-5)
