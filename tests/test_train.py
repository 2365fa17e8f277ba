"""Training in-process on tiny models: run folder, resume, refusal, early stopping, decoders."""

from __future__ import annotations

import json

import pytest
from conftest import base_config

from tasktune.config import load_config
from tasktune.errors import UserError


def _train(overrides, **kw):
    from tasktune.run import train

    return train(load_config(None, overrides), **kw)


def _history(run):
    return json.loads((run / "metrics_history.json").read_text())


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory):
    """One finished run shared by the read-only checks below."""
    from conftest import make_rows, write_jsonl

    d = tmp_path_factory.mktemp("trained")
    train, eval_ = write_jsonl(d / "train.jsonl", make_rows(120, 2)), write_jsonl(d / "eval.jsonl", make_rows(30, 3))
    run = d / "run"
    metrics = _train(base_config(tiny_bert, train, eval_, run, **{"train.epochs": 4}))
    return run, metrics


def test_run_folder_has_everything(trained):
    run, metrics = trained
    for name in ("config.yaml", "env.json", "data.json", "train.log", "metrics_history.json",
                 "training_curves.png", "best/model.safetensors", "best/tasktune.json",
                 "eval/eval/metrics.json", "eval/eval/predictions.jsonl", "eval/eval/confusion_matrix.png"):
        assert (run / name).is_file(), name
    checkpoints = sorted(run.glob("checkpoint-*"))
    assert checkpoints and all((c / "COMPLETE").is_file() for c in checkpoints)
    data = json.loads((run / "data.json").read_text())
    assert len(data["files"]["train"]["sha256"]) == 64 and data["files"]["train"]["rows"] == 120
    assert len(data["split"]["train_ids"]) == 120 and len(data["split"]["eval_ids"]) == 30
    env = json.loads((run / "env.json").read_text())
    assert env["seed"] == 7 and env["versions"]["transformers"] and env["processes"] == 1
    meta = json.loads((run / "best/tasktune.json").read_text())
    assert meta["task"] == "classification" and meta["state"]["labels"] == ["negative", "positive"]
    assert meta["state"]["label_counts"] == {"negative": 40, "positive": 80}


def test_training_learns_and_logs(trained):
    run, metrics = trained
    # The keyword task is trivially learnable: beating the 2/3 majority proves training took effect.
    assert metrics["accuracy"] > 0.8
    hist = _history(run)
    losses = [h["loss"] for h in hist if "loss" in h]
    assert losses[-1] < losses[0]
    assert any("eval_accuracy" in h for h in hist) and any("train_samples_per_s" in h for h in hist)
    preds = [json.loads(x) for x in (run / "eval/eval/predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 30 and abs(sum(preds[0]["probs"].values()) - 1) < 1e-4
    log = (run / "train.log").read_text()
    assert "step " in log and log[:4].isdigit()  # timestamped lines


def test_finished_run_is_not_overwritten(trained, tiny_bert):
    run, _ = trained
    cfg = load_config(run / "config.yaml")
    from tasktune.run import train

    with pytest.raises(UserError, match="--overwrite"):
        train(cfg)


def test_resume_matches_uninterrupted_run(tiny_bert, sentiment_files, tmp_path):
    from transformers import TrainerCallback

    train, eval_ = sentiment_files
    # Checkpoints every 4 steps, logs every 2: each logged loss covers steps on one side of a resume.
    extra = {"train.eval_steps": 4, "train.epochs": 2}

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 10:
                raise KeyboardInterrupt  # after checkpoint-8 exists, before checkpoint-12

    full = _train(base_config(tiny_bert, train, eval_, tmp_path / "full", **extra))
    with pytest.raises(KeyboardInterrupt):
        _train(base_config(tiny_bert, train, eval_, tmp_path / "cut", **extra), callbacks=[Crash()])
    assert not (tmp_path / "cut/best").exists()
    (tmp_path / "cut/checkpoint-8/COMPLETE").unlink()  # an incomplete newest checkpoint is skipped
    resumed = _train(base_config(tiny_bert, train, eval_, tmp_path / "cut", **extra))
    assert "resuming checkpoint-4" in (tmp_path / "cut/train.log").read_text()
    assert resumed["accuracy"] == full["accuracy"]

    def strip(h):
        return [{k: v for k, v in e.items() if k in ("step", "loss", "eval_loss", "eval_accuracy")} for e in h
                if "train_runtime" not in e]

    a, b = strip(_history(tmp_path / "full")), strip(_history(tmp_path / "cut"))
    assert [e["step"] for e in a] == [e["step"] for e in b]
    for x, y in zip(a, b):
        for k in x:
            assert x[k] == pytest.approx(y[k], rel=1e-4), (x, y)


def test_resume_refuses_a_changed_config(tiny_bert, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    run = tmp_path / "run"
    run.mkdir()
    from tasktune.atomic import write_text
    from tasktune.config import to_yaml

    write_text(run / "config.yaml", to_yaml(load_config(None, base_config(tiny_bert, train, eval_, run))))
    changed = base_config(tiny_bert, train, eval_, run, **{"train.learning_rate": 0.1})
    with pytest.raises(UserError, match="train.learning_rate"):
        _train(changed)
    with pytest.raises(UserError, match="--overwrite"):
        _train(base_config(tiny_bert, train, eval_, run, **{"train.resume": "never"}))


def test_early_stopping_patience(tiny_bert, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    # A learning rate of ~0 never improves eval loss by more than min_delta: stop after 2 bad evals.
    overrides = base_config(tiny_bert, train, eval_, tmp_path / "run", **{
        "train.learning_rate": 1e-9, "train.eval_steps": 3, "train.epochs": 5,
        "train.early_stopping.patience": 2, "train.early_stopping.min_delta": 0.01})
    _train(overrides)
    evals = [h for h in _history(tmp_path / "run") if "eval_loss" in h]
    assert [e["step"] for e in evals] == [3, 6, 9]
    assert "early stopping" in (tmp_path / "run/train.log").read_text()
    # Its counters travel in the checkpoint, so a resumed run keeps its patience.
    saved = json.loads((tmp_path / "run/checkpoint-9/trainer_state.json").read_text())["stateful_callbacks"]
    assert saved["EarlyStopping"]["attributes"]["bad_evals"] == 2


def test_eval_model_without_run_folder(trained, capsys, tmp_path):
    from tasktune.run import evaluate

    run, metrics = trained
    data = json.loads((run / "data.json").read_text())["files"]["eval"]["path"]
    got = evaluate(model=str(run / "best"), task_name="classification", data=data, baseline=True,
                   out=str(tmp_path / "out"))
    assert got["accuracy"] == pytest.approx(metrics["accuracy"])
    comparison = json.loads((tmp_path / "out/baseline_comparison.json").read_text())
    assert set(comparison["methods"]) == {"model", "majority"}


def test_decoder_backbone_with_head_and_accumulation(tiny_qwen, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    overrides = base_config(tiny_qwen, train, eval_, tmp_path / "run", **{
        "train.effective_batch_size": 16, "train.class_weights": "balanced", "train.label_smoothing": 0.1,
        "data.eval": 0.2, "train.epochs": 1, "train.head_learning_rate": 0.05})
    _train(overrides)
    log = (tmp_path / "run/train.log").read_text()
    assert "8 per device x 1 process(es) x 2 accumulation = 16" in log
    assert "head learning rate 0.05 on 1 tensor(s) of classifier, score" in log  # a decoder's head: score.weight
    data = json.loads((tmp_path / "run/data.json").read_text())
    assert len(data["split"]["eval_ids"]) == 24 and "stratified" in data["split"]["eval"]
    assert (tmp_path / "run/best/tasktune.json").is_file()


def test_effective_batch_must_divide():
    from tasktune.engine.trainer import accumulation_steps

    assert accumulation_steps(32, 8, 2) == 2 and accumulation_steps(None, 8, 4) == 1
    with pytest.raises(UserError, match="not a multiple"):
        accumulation_steps(30, 8, 1)


def test_loss_applies_class_weights_and_smoothing():
    import torch
    import torch.nn.functional as F

    from tasktune.tasks.classification import Classification

    cfg = load_config(None, ["model.name=x", "train.class_weights={negative: 3.0}", "train.label_smoothing=0.2"])
    state = {"labels": ["negative", "positive"], "label_counts": {"negative": 1, "positive": 3}}
    loss = Classification().loss(cfg, state)
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([3.0, 1.0]), label_smoothing=0.2,
                               reduction="sum") / 2
    assert loss({"logits": logits}, labels).item() == pytest.approx(expected.item())
    assert loss({"logits": logits}, labels).item() != pytest.approx(F.cross_entropy(logits, labels).item())


def test_prediction_order_does_not_matter(trained):
    """Inference sorts rows by length for batching; results must come back per row, unchanged."""
    from tasktune.run import load_run

    run, _ = trained
    task, cfg, state, best = load_run(run)
    model, tok = task.build_model(str(best), cfg, state, for_training=False)
    rows = [{"id": str(i), "text": t} for i, t in enumerate(["good", "the room was very dirty and noisy 脏 吵",
                                                             "great clean hotel staff 好 棒 干净", "bad"])]
    forward = task.predict(model, tok, rows, cfg, state, batch_size=2)
    backward = task.predict(model, tok, rows[::-1], cfg, state, batch_size=3)[::-1]
    assert [p["id"] for p in forward] == ["0", "1", "2", "3"]
    for a, b in zip(forward, backward):
        assert a["id"] == b["id"] and a["label"] == b["label"]
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)


def test_head_learning_rate_gets_its_own_param_groups(tmp_path):
    from collections import OrderedDict

    from torch import nn
    from transformers import TrainingArguments

    from tasktune.engine.trainer import _trainer_class

    model = nn.Sequential(OrderedDict(body=nn.Linear(4, 4), span_head=nn.Linear(4, 2)))
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.1, use_cpu=True,
                             report_to="none", max_steps=10)
    trainer = _trainer_class(["span_head"], 1e-2)(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    lr = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lr[id(model.span_head.weight)] == lr[id(model.span_head.bias)] == 1e-2
    assert lr[id(model.body.weight)] == lr[id(model.body.bias)] == 1e-4
    assert decay[id(model.span_head.weight)] == 0.1 and decay[id(model.span_head.bias)] == 0.0  # Trainer's rule kept
    assert len(lr) == 4  # every parameter once
    for _ in range(5):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    now = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert now[id(model.span_head.weight)] == pytest.approx(5e-3) and now[id(model.body.weight)] == pytest.approx(5e-5)
