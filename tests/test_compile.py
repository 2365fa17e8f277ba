"""train.compile: each transformer layer compiled in place; same losses and gradients as eager, the module
tree and saved weights unchanged, and a run through the real loading code (inductor: marked slow)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import base_config

from tasktune.config import load_config


def _lora_decoder(path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path)
    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")).train()


@pytest.mark.parametrize("decoder", ["tiny_qwen", "tiny_gemma"])
def test_compiled_layers_give_eager_losses_and_gradients_and_keep_the_weights_names(decoder, request):
    from tasktune.models.compile_layers import compile_layers
    from tasktune.models.peft_adapters import layer_stack

    path = request.getfixturevalue(decoder)
    eager, compiled = _lora_decoder(path), _lora_decoder(path)
    for a, b in zip(eager.parameters(), compiled.parameters()):  # LoRA B off zero, so every adapter has gradients
        if a.requires_grad:
            a.data.add_(0.01 * torch.randn_like(a))
        b.data.copy_(a.data)
    assert len(layer_stack(compiled)[1]) == 2
    names = list(compiled.state_dict())
    # backend eager runs dynamo's capture (graph breaks, guards, dynamic shapes) without a C++ compiler.
    assert compile_layers(compiled, backend="eager") == 2
    assert list(compiled.state_dict()) == names
    for length in (12, 19):  # two lengths, one graph (dynamic shapes): both must match eager
        ids = torch.randint(3, 100, (2, length))
        losses = []
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], rel=1e-5)
        for (n, a), b in zip(eager.named_parameters(), compiled.parameters()):
            if a.requires_grad:
                assert torch.allclose(a.grad, b.grad, atol=1e-6), n


def test_a_model_without_a_layer_stack_runs_eager():
    from tasktune.models.compile_layers import compile_layers

    assert compile_layers(torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())) == 0


@pytest.mark.slow
def test_train_compile_runs_through_the_engine_with_inductor(tiny_qwen, sentiment_files, tmp_path):
    from tasktune.run import train

    train_f, eval_f = sentiment_files
    run = tmp_path / "run"
    overrides = base_config(tiny_qwen, train_f, eval_f, run, **{
        "model.lora": "{r: 4, alpha: 8, dropout: 0.0}", "train.compile": "true",
        "train.max_steps": 4, "train.batch_size": 4, "train.learning_rate": 1e-3})
    train(load_config(None, overrides))
    history = json.loads((run / "metrics_history.json").read_text())
    assert max(h["step"] for h in history) == 4 and (run / "best/adapter_config.json").is_file()
    assert "layers compiled" in (run / "train.log").read_text()
