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


def test_head_skips_cpu_bf16_autocast_for_few_rows_only(tiny_qwen):
    # Autocast re-casts a frozen head weight at every call (gemma's: 168M values); for a few rows the fp32
    # product is cheaper and exact. More rows than FP32_HEAD_MAX_ROWS keep autocast's bf16 product.
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from tasktune.models import lm_head

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.float32).eval()
    lm_head.fp32_head_for_few_rows(model)
    lm_head.fp32_head_for_few_rows(model)  # a second call leaves the first wrapper alone
    head = model.get_output_embeddings()
    few = torch.randn(2, 3, head.in_features)
    many = torch.randn(1, lm_head.FP32_HEAD_MAX_ROWS + 1, head.in_features)
    plain = torch.nn.functional.linear
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got_few, got_many = head(few), head(many)
    assert got_few.dtype == torch.float32 and torch.equal(got_few, plain(few, head.weight, head.bias))
    assert got_many.dtype == torch.bfloat16
    with torch.no_grad():  # without autocast the head is the plain fp32 head
        assert torch.equal(head(few), plain(few, head.weight, head.bias))
    copied = copy.deepcopy(model).get_output_embeddings()  # its forward reads the copy's weight, not the original's
    copied.weight.data.zero_()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert not copied(few).any() and torch.equal(head(few), got_few)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids, logits_to_keep=1).logits
    logits.sum().backward()  # gradients flow through the fp32 head to the LM's layers
    assert logits.dtype == torch.float32
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.model.layers[0].parameters())


@pytest.mark.parametrize("task_args", [
    ("task=classification", "task.method=label_scoring", "task.labels=[neg,pos]", "task.prompt='{text} is'",
     "task.verbalizer={neg: bad, pos: good}"),
    ("task=multiple_choice",),
    ("task=sft",),
])
@pytest.mark.parametrize("for_training", [True, False])
def test_every_task_causal_lm_gets_the_few_rows_head(tiny_qwen, task_args, for_training):
    # The head change lives in one loading function; each task that scores or generates with a causal LM,
    # with LoRA for training and plainly for inference, must come out of build_model with it.
    from tasktune.config import load_config
    from tasktune.tasks import get_task

    cfg = load_config(None, [*task_args, f"model.name={tiny_qwen}", "model.max_length=64",
                             f"model.lora={{r: 4}}" if for_training else "model.lora=null"])
    task = get_task(cfg.task.name)
    state = {"labels": ["neg", "pos"]} if cfg.task.name == "classification" else {}
    model, _ = task.build_model(tiny_qwen, cfg, state, for_training=for_training)
    assert "forward" in vars(model.get_output_embeddings())
