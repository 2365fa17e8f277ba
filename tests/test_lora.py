"""LoRA as a config switch: adapter in best/, reload for eval, merged export gives the same outputs."""

from __future__ import annotations

import json

import pytest
from conftest import base_config

from tasktune.config import load_config
from tasktune.errors import UserError


def test_lora_train_eval_export_equivalence(tiny_qwen, sentiment_files, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tasktune.export import export_run
    from tasktune.run import evaluate, load_run, train

    train_f, eval_f = sentiment_files
    run = tmp_path / "run"
    train(load_config(None, base_config(tiny_qwen, train_f, eval_f, run, **{
        "model.lora": "{r: 4, alpha: 8, dropout: 0.0}", "train.epochs": 1})))
    best = run / "best"
    assert (best / "adapter_config.json").is_file() and not (best / "model.safetensors").exists()
    meta = json.loads((best / "tasktune.json").read_text())
    assert len(meta["base_model"]["sha256"]) == 64
    assert "LoRA r=4" in (run / "train.log").read_text()

    saved = [json.loads(x) for x in (run / "eval/eval/predictions.jsonl").read_text().splitlines()]
    saved_accuracy = json.loads((run / "eval/eval/metrics.json").read_text())["accuracy"]
    metrics = evaluate(run=str(run))  # base + adapter reloaded from best/ give the training run's predictions
    again = [json.loads(x) for x in (run / "eval/eval/predictions.jsonl").read_text().splitlines()]
    for a, b in zip(again, saved):
        assert a["label"] == b["label"] and a["probs"] == pytest.approx(b["probs"], abs=1e-5)
    assert metrics["accuracy"] == saved_accuracy

    with pytest.raises(UserError, match="--merge-lora"):
        export_run(str(run), str(tmp_path / "plain"))
    export_run(str(run), str(tmp_path / "merged"), merge_lora=True)
    assert not (tmp_path / "merged/adapter_config.json").exists()

    task, cfg, state, _ = load_run(run)
    adapted, tok = task.build_model(str(best), cfg, state, for_training=False)
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "merged")
    batch = AutoTokenizer.from_pretrained(tmp_path / "merged")(["good clean room", "dirty 脏"], return_tensors="pt",
                                                               padding=True)
    with torch.no_grad():
        a, b = adapted.eval()(**batch).logits, merged.eval()(**batch).logits
    assert torch.allclose(a, b, atol=1e-5), (a, b)
    # The merged folder is a plain classifier that knows its labels (eval --model works on it).
    assert merged.config.id2label == {0: "negative", 1: "positive"}


def test_dtype_policy_trainable_weights_are_fp32(tiny_qwen, tmp_path, cpu_bf16):
    import torch
    from transformers import AutoModelForCausalLM

    from tasktune.tasks.classification import Classification

    bf16 = tmp_path / "bf16"
    AutoModelForCausalLM.from_pretrained(tiny_qwen, dtype=torch.bfloat16).save_pretrained(bf16)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(tiny_qwen).save_pretrained(bf16)
    state = {"labels": ["a", "b"], "label_counts": {}}
    task = Classification()
    # Inference keeps the checkpoint's dtype (on a CPU with bf16 units); full fine-tuning trains fp32
    # weights; LoRA trains fp32 adapters.
    cpu_bf16(3.5)
    model, _ = task.build_model(str(bf16), load_config(None, ["task=classification", f"model.name={bf16}"]), state, for_training=False)
    assert model.dtype == torch.bfloat16
    model, _ = task.build_model(str(bf16), load_config(None, ["task=classification", f"model.name={bf16}"]), state, for_training=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    cfg = load_config(None, ["task=classification", f"model.name={bf16}", "model.lora={r: 2}"])
    model, _ = task.build_model(str(bf16), cfg, state, for_training=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert any(p.dtype == torch.float32 for n, p in model.named_parameters() if "score" in n and p.requires_grad)
    assert trainable and all(p.dtype == torch.float32 for p in trainable)
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    # The bf16 backbone feeds the fp32 head, and gradients reach it.
    out = model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([1]))
    out.loss.backward()
    assert out.logits.dtype == torch.float32
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and "score" in n)


def test_qlora_trains_adapters_on_a_4bit_base(qwen64, sentiment_files, tmp_path):
    pytest.importorskip("bitsandbytes")
    from tasktune.run import load_run, train

    base = qwen64
    train_f, eval_f = sentiment_files
    run = tmp_path / "run"
    train(load_config(None, base_config(str(base), train_f, eval_f, run, **{
        "model.lora": "{r: 4, target_modules: [q_proj, v_proj]}", "model.quantization": "4bit",
        "train.max_steps": 3})))
    assert (run / "best/adapter_config.json").is_file()
    task, cfg, state, best = load_run(run)
    model, _ = task.build_model(str(best), cfg, state, for_training=False)
    kinds = {type(m).__name__ for m in model.modules()}
    assert "Linear4bit" in kinds  # the frozen base really is 4-bit at inference too
    with pytest.raises(UserError, match="model.quantization trains LoRA adapters"):
        load_config(None, ["task=classification", "model.name=x", "model.quantization=4bit"])


def test_cheap_dropout_matches_torch_dropout_in_law_and_gradient():
    import torch

    from tasktune.models.lora_dropout import CheapDropout

    torch.manual_seed(0)
    drop = CheapDropout(0.05)
    x = torch.randn(1000, 1000, requires_grad=True)
    y = drop(x)
    kept = y != 0
    # Kept elements are scaled by 1 / (1 - p); the drop rate is p (binomial sd over 1e6 draws: 2.2e-4).
    assert torch.allclose(y[kept], x[kept] / 0.95)
    assert abs((~kept).float().mean().item() - 0.05) < 1e-3
    y.sum().backward()  # the gradient is the same mask and scale
    assert torch.allclose(x.grad, kept.float() / 0.95)
    # Masks are independent from call to call and reproducible under a seed.
    torch.manual_seed(1)
    a = drop(torch.ones(4, 640)) == 0
    b = drop(torch.ones(4, 640)) == 0
    torch.manual_seed(1)
    assert torch.equal(a, drop(torch.ones(4, 640)) == 0) and not torch.equal(a, b)
    drop.eval()
    assert drop(x) is x
    assert CheapDropout(0.0).train()(x) is x


def test_lora_layers_use_cheap_dropout_with_their_own_p(tiny_qwen):
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import AutoModelForCausalLM

    from tasktune.models.lora_dropout import CheapDropout
    from tasktune.models.peft_adapters import apply_lora

    cfg = load_config(None, ["task=classification", f"model.name={tiny_qwen}", "model.lora={r: 2, dropout: 0.1}"])
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), cfg.model.lora, task_type=None)
    drops = [m.lora_dropout["default"] for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), nn.ModuleDict)]
    assert drops and all(type(d) is CheapDropout and d.p == 0.1 for d in drops)
    # p = 0: peft's identity stays, nothing to draw.
    plain = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_qwen),
                           LoraConfig(r=2, lora_dropout=0.0, target_modules="all-linear"))
    from tasktune.models.lora_dropout import swap_lora_dropout

    assert swap_lora_dropout(plain) == 0


def test_wrapping_and_loading_adapters_print_no_peft_deprecation(tiny_qwen, tmp_path):
    # peft reads a transformers attribute renamed in v5: the FutureWarning reached every `predict` as noise.
    import warnings

    from transformers import AutoModelForCausalLM

    from tasktune.config import LoraSettings
    from tasktune.models.peft_adapters import apply_lora, load_adapter

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_qwen), LoraSettings(r=2), "CAUSAL_LM")
        model.save_pretrained(tmp_path / "adapter")
        load_adapter(AutoModelForCausalLM.from_pretrained(tiny_qwen), tmp_path / "adapter")
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
