"""Label scoring: scores equal a brute-force sum of log-probabilities; training beats zero-shot."""

from __future__ import annotations

import json

import pytest
from conftest import base_config

from tasktune.config import load_config

PROMPT = "review: {text} sentiment:"


def scoring_overrides(verbalizer: str) -> list[str]:
    return ["task.method=label_scoring", f"task.prompt={PROMPT}", f"task.verbalizer={verbalizer}"]


@pytest.mark.parametrize("verbalizer, width", [
    ("{positive: ' good room', negative: ' bad'}", 2),         # words of different token lengths
    ("{positive: [' good', ' great staff'], negative: ' bad'}", 2),  # several words for one label
    ("{positive: ' good', negative: ' bad'}", 1),              # single tokens: one sequence per row
])
def test_batched_scores_equal_brute_force(tiny_qwen, verbalizer, width):
    import torch
    from transformers import AutoModelForCausalLM

    from tasktune.tasks.classification import Classification

    cfg = load_config(None, ["task=classification", f"model.name={tiny_qwen}", "model.max_length=64",
                             *scoring_overrides(verbalizer)])
    state = {"labels": ["negative", "positive"], "label_counts": {}}
    task = Classification()
    model, tok = task.build_model(tiny_qwen, cfg, state, for_training=False)
    rows = [{"text": "the room was clean"}, {"text": "dirty 脏"}, {"text": "ok"}]
    feats = task.prepare(rows, tok, cfg, state)
    from tasktune.tasks.label_scoring import candidates

    assert candidates(tok, state["labels"], cfg.task.verbalizer).width == width
    with torch.no_grad():
        got = task._scores(model, task.collator(tok, cfg, state)(feats), cfg, state)
    plain = AutoModelForCausalLM.from_pretrained(tiny_qwen).eval()
    for b, f in enumerate(feats):
        for k, label in enumerate(state["labels"]):
            words = cfg.task.verbalizer[label]
            per_word = []
            for word in [words] if isinstance(words, str) else words:
                w = tok(word, add_special_tokens=False)["input_ids"]
                ids = torch.tensor([f["prompt_ids"] + w])
                with torch.no_grad():
                    logp = plain(ids).logits[0].log_softmax(-1)
                start = len(f["prompt_ids"])
                per_word.append(sum(logp[start + j - 1, t] for j, t in enumerate(w)))
            expected = torch.logsumexp(torch.stack(per_word), 0)
            assert got[b, k].item() == pytest.approx(expected.item(), abs=1e-4), (b, label)


def test_label_scoring_lora_beats_zero_shot(tiny_qwen, sentiment_files, tmp_path):
    from tasktune.run import evaluate, train

    train_f, eval_f = sentiment_files
    run = tmp_path / "run"
    metrics = train(load_config(None, base_config(tiny_qwen, train_f, eval_f, run, **{
        "model.lora": "{r: 8, alpha: 16}", "train.epochs": 3, "train.learning_rate": 1e-2,
        "baseline.after_training": "true", "train.eval_during_training": "false"})
        + scoring_overrides("{positive: ' good', negative: ' bad'}")))
    assert not any("eval_loss" in h for h in json.loads((run / "metrics_history.json").read_text()))
    comparison = json.loads((run / "eval/eval/baseline_comparison.json").read_text())
    methods = comparison["methods"]
    assert set(methods) == {"model", "majority", "zero_shot", "zero_shot_calibrated"}
    assert metrics["accuracy"] > 0.8 and metrics["accuracy"] > methods["zero_shot"]["accuracy"]
    assert (run / "eval/eval/baselines/zero_shot.jsonl").is_file()
    assert (run / "best/adapter_config.json").is_file()
    again = evaluate(run=str(run))  # reloads base + adapter and the prompt from tasktune.json
    assert again["accuracy"] == pytest.approx(metrics["accuracy"])


def test_calibrated_zero_shot_divides_by_the_content_free_prior(tiny_qwen):
    """Contextual calibration by hand: p(label | text) / p(label | "N/A"), renormalised."""
    from tasktune.tasks.classification import CONTENT_FREE, Classification

    cfg = load_config(None, ["task=classification", f"model.name={tiny_qwen}", "model.max_length=64",
                             *scoring_overrides("{positive: ' good', negative: ' bad room'}")])
    state = {"labels": ["negative", "positive"], "label_counts": {}}
    task = Classification()
    rows = [{"id": "a", "text": "the room was clean"}, {"id": "b", "text": "dirty 脏"}]
    found = task.zero_shot(tiny_qwen, rows, cfg, state, batch_size=2)
    plain, calibrated = found["zero_shot"], found["zero_shot_calibrated"]
    model, tok = task.build_model(tiny_qwen, cfg, state, for_training=False)
    prior = task.predict(model, tok, [{"id": "cf", "text": CONTENT_FREE}], cfg, state)[0]["probs"]
    for p, c in zip(plain, calibrated):
        raw = {lab: p["probs"][lab] / prior[lab] for lab in state["labels"]}
        total = sum(raw.values())
        for lab in state["labels"]:
            assert c["probs"][lab] == pytest.approx(raw[lab] / total, abs=1e-5)
        assert c["label"] == max(raw, key=raw.get)
    assert any(abs(p["probs"]["positive"] - c["probs"]["positive"]) > 1e-3 for p, c in zip(plain, calibrated))


@pytest.mark.parametrize("model_fixture", ["tiny_qwen", "tiny_gemma"])
@pytest.mark.parametrize("verbalizer", ["{positive: ' good', negative: ' bad'}",
                                        "{positive: ' good room', negative: ' bad'}"])
def test_packed_batches_score_like_padded_ones(request, model_fixture, verbalizer):
    """train.packing: the batch's prompts back to back in one row, attention kept within each (gemma's sliding
    window of 8 included): the same label scores and loss as left-padded sequences."""
    import torch

    from tasktune.tasks.classification import Classification

    model_path = request.getfixturevalue(model_fixture)
    state = {"labels": ["negative", "positive"], "label_counts": {"negative": 1, "positive": 2}}
    task = Classification()
    cfg = load_config(None, ["task=classification", f"model.name={model_path}", "model.max_length=64",
                             "train.packing=true", *scoring_overrides(verbalizer)])
    model, tok = task.build_model(model_path, cfg, state, for_training=False)
    rows = [{"text": "the room was clean and the staff were very good", "label": "positive"},
            {"text": "dirty 脏", "label": "negative"}, {"text": "ok", "label": "positive"}]
    feats = task.prepare(rows, tok, cfg, state)
    packed = task.collator(tok, cfg, state)(feats)
    padded = task.collator(tok, cfg, state, packed=False)(feats)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    from tasktune.tasks.label_scoring import candidates

    cands = candidates(tok, state["labels"], cfg.task.verbalizer)
    words = [[]] if cands.single_token else cands.token_ids
    # No padding computed: one (prompt + word) sequence per row and word, back to back.
    assert packed["input_ids"].shape[1] == sum(len(f["prompt_ids"]) + len(w) for f in feats for w in words)
    if not cands.single_token:  # unpacked, each prompt is read once and the words continue it
        assert padded["input_ids"].shape[0] == 3 and padded["cont_ids"].shape[0] == 3 * len(words)
    with torch.no_grad():
        a, b = task._scores(model, packed, cfg, state), task._scores(model, padded, cfg, state)
        loss_a = task.compute_loss(model, packed, cfg, state)
        loss_b = task.compute_loss(model, padded, cfg, state)
    assert torch.allclose(a, b, atol=1e-4), (a, b)
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-4)
    # Without the block-diagonal mask the later prompts would read the earlier ones: the check above would fail.
    leaky = {**packed, "position_ids": torch.arange(packed["input_ids"].shape[1])[None]}
    with torch.no_grad():
        assert not torch.allclose(task._scores(model, leaky, cfg, state)[1:], b[1:], atol=1e-4)


def test_lora_layers_adapts_only_the_top_layers(tiny_qwen):
    from tasktune.tasks.classification import Classification

    state = {"labels": ["negative", "positive"], "label_counts": {}}
    cfg = load_config(None, ["task=classification", f"model.name={tiny_qwen}", "model.lora={r: 2, layers: 1}",
                             *scoring_overrides("{positive: ' good', negative: ' bad'}")])
    model, _ = Classification().build_model(tiny_qwen, cfg, state, for_training=True)
    adapted = {n.split(".layers.")[1].split(".")[0] for n, p in model.named_parameters() if "lora_A" in n}
    assert adapted == {"1"}  # of layers 0 and 1, only the top one
    with pytest.raises(Exception, match="the model has 2 layers"):
        Classification().build_model(tiny_qwen, cfg.model_copy(update={"model": cfg.model.model_copy(update={
            "lora": cfg.model.lora.model_copy(update={"layers": 5})})}), state, for_training=True)
