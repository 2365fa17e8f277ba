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

    metrics = evaluate(run=str(run))
    assert 0.0 <= metrics["accuracy"] <= 1.0

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
