"""Training in-process on tiny models: run folder, resume, refusal, early stopping, decoders."""

from __future__ import annotations

import json

import pytest
import torch
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
    assert env["device"].startswith("cpu (") and env["device"].endswith(f", {torch.backends.cpu.get_cpu_capability()})")
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


RESUME_SETUPS = {
    "full fine-tuning": ("tiny_bert", {}),
    "LoRA with a head learning rate": ("tiny_qwen", {"model.lora": "{r: 4, alpha: 8, dropout: 0.0}",
                                                     "train.head_learning_rate": 0.05}),
    "span head + LoRA": ("qa_qwen", {"task": "extractive_qa", "model.max_length": 64, "task.doc_stride": 16,
                                     "model.lora": "{r: 4, alpha: 8, dropout: 0.0}",
                                     "train.head_learning_rate": 0.05}),
}


@pytest.mark.parametrize("setup", list(RESUME_SETUPS))
def test_resume_matches_uninterrupted_run(request, sentiment_files, tmp_path, setup):
    """Crash after checkpoint-8, lose it, resume from checkpoint-4: the same history as one run. Covers the
    regrouped optimizer state of a head learning rate and the span head's standardiser buffers."""
    from transformers import TrainerCallback

    fixture, extra = RESUME_SETUPS[setup]
    model = request.getfixturevalue(fixture)
    train, eval_ = sentiment_files
    if extra.get("task") == "extractive_qa":
        from conftest import write_jsonl
        from qa_data import make_records, qa_rows

        train = write_jsonl(tmp_path / "qa_train.jsonl", qa_rows(make_records(40, seed=1)))
        eval_ = write_jsonl(tmp_path / "qa_eval.jsonl", qa_rows(make_records(8, seed=2)))
    # Checkpoints every 4 steps, logs every 2: each logged loss covers steps on one side of a resume.
    extra = {"train.eval_steps": 4, "train.epochs": 2, "train.max_steps": 14, **extra}

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 10:
                raise KeyboardInterrupt  # after checkpoint-8 exists, before checkpoint-12

    full = _train(base_config(model, train, eval_, tmp_path / "full", **extra))
    with pytest.raises(KeyboardInterrupt):
        _train(base_config(model, train, eval_, tmp_path / "cut", **extra), callbacks=[Crash()])
    assert not (tmp_path / "cut/best").exists()
    (tmp_path / "cut/checkpoint-8/COMPLETE").unlink()  # an incomplete newest checkpoint is skipped
    resumed = _train(base_config(model, train, eval_, tmp_path / "cut", **extra))
    assert "resuming checkpoint-4" in (tmp_path / "cut/train.log").read_text()
    key = "accuracy" if "accuracy" in full else "f1"
    assert resumed[key] == pytest.approx(full[key], rel=1e-4)

    def strip(h):
        return [{k: v for k, v in e.items() if k in ("step", "loss", "eval_loss", f"eval_{key}")} for e in h
                if "train_runtime" not in e]

    a, b = strip(_history(tmp_path / "full")), strip(_history(tmp_path / "cut"))
    assert [e["step"] for e in a] == [e["step"] for e in b] and len(a) > 5
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


def test_decoder_backbone_with_head_and_class_weights(tiny_qwen, sentiment_files, tmp_path):
    train, eval_ = sentiment_files
    overrides = base_config(tiny_qwen, train, eval_, tmp_path / "run", **{
        "train.effective_batch_size": 16, "task.class_weights": "balanced", "train.label_smoothing": 0.1,
        "data.eval": 0.2, "train.epochs": 3, "train.head_learning_rate": 0.05, "train.learning_rate": 1e-2})
    metrics = _train(overrides)
    assert metrics["accuracy"] > 0.8  # above the 2/3 majority: a decoder's `score` head learnt
    data = json.loads((tmp_path / "run/data.json").read_text())
    assert len(data["split"]["eval_ids"]) == 24 and "stratified" in data["split"]["eval"]


def _weights(run):
    from safetensors.torch import load_file

    return load_file(str(run / "best/model.safetensors"))


def _measured_span_model(qa_qwen, folder, rows):
    """qa_qwen as a span model whose feature standardiser is already measured (on `rows`), saved to `folder`:
    otherwise each run would measure its own first micro-batch and the two runs would differ by design."""
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from tasktune.models.span_head import span_model_class
    from tasktune.tasks import qa_spans

    tok = AutoTokenizer.from_pretrained(qa_qwen)
    model = span_model_class(AutoConfig.from_pretrained(qa_qwen)).from_pretrained(qa_qwen)
    batch = qa_spans.SpanCollator(tok.pad_token_id)(qa_spans.make_features(tok, rows, 96, 16, labelled=False))
    with torch.no_grad():
        model.train()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert bool(model.head_norm.ready)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("family", ["classification", "extractive_qa"])
def test_accumulation_gives_the_same_update_as_one_big_batch(tiny_qwen, qa_qwen, tmp_path, family):
    """12 rows: batch 8 x 2 accumulation (micro-batches of 8 and 4) and batch 16 x 1 must take the same step:
    the loss is normalised over the items of the whole accumulated batch, not averaged per micro-batch
    (which would weigh the 4 rows of the second micro-batch twice as much). So must train.sampling=
    batch_rebalance (the step's rows sorted by length into 4 forward passes of varying size)."""
    import torch

    from conftest import make_rows, write_jsonl

    if family == "classification":
        rows, model, extra = make_rows(12, seed=5), tiny_qwen, {"model.max_length": 32}
    else:
        from qa_data import make_records, qa_rows

        rows = qa_rows(make_records(4, seed=5, long_every=1000))[:12]
        model = _measured_span_model(qa_qwen, tmp_path / "span", rows)
        extra = {"task": "extractive_qa", "model.max_length": 96, "task.doc_stride": 16}
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    runs = {}
    for batch, sampling in ((8, "random"), (16, "random"), (4, "batch_rebalance")):
        run = tmp_path / f"b{batch}"
        _train(base_config(model, train_file, "null", run, **{
            "train.batch_size": batch, "train.effective_batch_size": 16, "train.max_steps": 1,
            "train.eval_during_training": "false", "train.learning_rate": 0.1, "train.label_smoothing": 0.1,
            "train.sampling": sampling, **extra}))
        runs[batch] = _weights(run)
    before = _weights_of(model)
    moved = 0
    for name, small in runs[8].items():
        # Adam's first step is about lr * sign(gradient): float noise moves an element by far less than
        # 1e-3 * lr, a differently weighted gradient flips signs (2 * lr apart).
        assert torch.allclose(small, runs[16][name], atol=1e-4), name
        assert torch.allclose(runs[4][name], runs[16][name], atol=1e-4), name
        moved += int(name in before and not torch.allclose(small, before[name]))
    assert moved > 0  # the step really changed weights


def _weights_of(folder):
    from pathlib import Path

    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def test_batch_rebalance_sorts_each_steps_rows_into_passes_of_similar_length(tiny_qwen, tmp_path, capsys):
    from conftest import make_rows, write_jsonl

    from tasktune.cli import main

    rows = make_rows(16, seed=3)
    for i, r in enumerate(rows):
        r["text"] = " ".join([r["text"]] * (1 + i % 4))  # lengths from short to 4x
    train_file = write_jsonl(tmp_path / "train.jsonl", rows)
    widths = []
    from tasktune.tasks.classification import Classification

    original = Classification.compute_loss

    def spy(self, model, batch, cfg, state):
        widths.append((len(batch["input_ids"]), int(batch["attention_mask"].sum(1).max())))
        return original(self, model, batch, cfg, state)

    Classification.compute_loss = spy
    try:
        _train(base_config(tiny_qwen, train_file, "null", tmp_path / "r", **{
            "task.method": "head", "train.batch_size": 2, "train.effective_batch_size": 8, "train.epochs": 1,
            "train.sampling": "batch_rebalance", "train.eval_during_training": "false"}))
    finally:
        Classification.compute_loss = original
    steps = [widths[i:i + 4] for i in range(0, len(widths), 4)]
    assert len(steps) == 2 and all(sum(n for n, _ in step) == 8 for step in steps)  # 8 rows per optimizer step
    assert any(len({n for n, _ in step}) > 1 for step in steps)  # short rows share a pass, long rows get smaller ones
    # Refused without accumulation: one line, exit 2.
    (tmp_path / "empty.yaml").write_text("{}\n")
    assert main(["train", str(tmp_path / "empty.yaml"), *base_config(tiny_qwen, train_file, "null", tmp_path / "x", **{
        "train.sampling": "batch_rebalance"})]) == 2
    assert "train.sampling=batch_rebalance" in capsys.readouterr().err


def test_effective_batch_must_divide():
    from tasktune.engine.trainer import accumulation_steps

    assert accumulation_steps(32, 8, 2) == 2 and accumulation_steps(None, 8, 4) == 1
    with pytest.raises(UserError, match="not a multiple"):
        accumulation_steps(30, 8, 1)


class _FixedLogits:
    """A stand-in model whose forward returns the given logits (to test a loss by hand)."""

    def __init__(self, logits):
        self.logits = logits

    def __call__(self, **inputs):
        from types import SimpleNamespace

        return SimpleNamespace(logits=self.logits)


def test_loss_applies_class_weights_and_smoothing():
    import torch
    import torch.nn.functional as F

    from tasktune.tasks.classification import Classification

    state = {"labels": ["negative", "positive"], "label_counts": {"negative": 1, "positive": 3}}
    logits, labels = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    batch = {"input_ids": torch.zeros(2, 3, dtype=torch.long), "labels": labels}

    def loss(*overrides):
        cfg = load_config(None, ["task=classification", "model.name=x", *overrides])
        return Classification().compute_loss(_FixedLogits(logits), batch, cfg, state).item()

    plain = F.cross_entropy(logits, labels, reduction="sum").item()
    assert loss() == pytest.approx(plain)  # a sum over items: the engine divides by the accumulated count
    weighted = F.cross_entropy(logits, labels, weight=torch.tensor([3.0, 1.0]), reduction="sum").item()
    assert loss("task.class_weights={negative: 3.0}") == pytest.approx(weighted) and weighted > plain
    smoothed = F.cross_entropy(logits, labels, label_smoothing=0.2, reduction="sum").item()
    assert loss("train.label_smoothing=0.2") == pytest.approx(smoothed) and smoothed != pytest.approx(plain)
    balanced = [4 / (2 * 1), 4 / (2 * 3)]  # inverse frequency: total / (labels x count)
    expected = F.cross_entropy(logits, labels, weight=torch.tensor(balanced), reduction="sum").item()
    assert loss("task.class_weights=balanced") == pytest.approx(expected)


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

    from types import SimpleNamespace

    from tasktune.engine.task_trainer import TaskTrainer

    model = nn.Sequential(OrderedDict(body=nn.Linear(4, 4), span_head=nn.Linear(4, 2)))
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-4, weight_decay=0.1, use_cpu=True,
                             report_to="none", max_steps=10)
    task = SimpleNamespace(head_modules=lambda cfg: ["span_head"])
    cfg = SimpleNamespace(train=SimpleNamespace(head_learning_rate=1e-2))
    trainer = TaskTrainer(model=model, args=args, task=task, cfg=cfg, state={})
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
