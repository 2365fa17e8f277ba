"""The pooled classification head (task.pooling mean/last, task.standardize): what it reads, that it trains
and reloads the same through the run folder, and the refused combinations."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import base_config

from tasktune.config import load_config
from tasktune.errors import UserError


def _head(gemma, pooling, standardize=False, attention="bidirectional"):
    from tasktune.tasks.classification import Classification

    cfg = load_config(None, ["task=classification", f"model.name={gemma}", f"model.attention={attention}",
                             f"task.pooling={pooling}", f"task.standardize={standardize}"])
    return Classification().build_model(gemma, cfg, {"labels": ["neg", "pos"]}, for_training=True)


def test_mean_pooling_reads_every_real_token_and_no_padding(tiny_gemma):
    model, tok = _head(tiny_gemma, "mean")
    torch.nn.init.normal_(model.score.weight)  # a zero head says nothing
    ids = torch.tensor([[5, 6, 7, 8], [5, 6, 9, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    model.eval()
    logits = model(input_ids=ids, attention_mask=mask).logits
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
    by_hand = model.score(torch.stack([hidden[0].mean(0), hidden[1, :3].mean(0)]))
    torch.testing.assert_close(logits, by_hand)
    other_pad = model(input_ids=torch.tensor([[5, 6, 7, 8], [5, 6, 9, 42]]), attention_mask=mask).logits
    torch.testing.assert_close(logits, other_pad)  # the padded position's content is never read
    # Bidirectional: the first token's state, hence the mean, depends on a later token through attention.
    assert model.config.use_bidirectional_attention is True


def test_standardised_head_measures_once_in_training(tiny_gemma):
    model, _ = _head(tiny_gemma, "last", standardize=True)
    ids, mask = torch.tensor([[5, 6, 7, 8], [5, 9, 0, 0]]), torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    model.train()
    model(input_ids=ids, attention_mask=mask)
    hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[mask.bool()]
    torch.testing.assert_close(model.head_norm.mean, hidden.mean(0), atol=1e-5, rtol=1e-4)
    assert model.head_norm.ready.item() == 1
    before = model.head_norm.mean.clone()
    model(input_ids=ids + 1, attention_mask=mask)  # a second batch does not measure again
    assert torch.equal(model.head_norm.mean, before)


def test_pooled_head_trains_saves_and_reloads_through_the_run(tiny_gemma, sentiment_files, tmp_path):
    """LoRA + the pooled standardised head: the run learns the keyword sentiment, best/ keeps the head and its
    measured standardiser, and a reload predicts the probabilities the run's evaluation wrote."""
    from tasktune.run import load_run, train

    train_f, eval_f = sentiment_files
    run = tmp_path / "run"
    train(load_config(None, base_config(tiny_gemma, train_f, eval_f, run, **{
        "train.epochs": 4, "train.learning_rate": 2e-2, "model.attention": "bidirectional", "task.pooling": "mean",
        "task.standardize": "true", "model.lora": "{r: 4, dropout: 0.0, target_modules: all-linear}"})))
    metrics = json.loads((run / "eval/eval/metrics.json").read_text())
    # No LoRA dropout: the figure does not hang on dropout's random stream (this seed gives 28 of 30).
    assert metrics["accuracy"] >= 0.9  # above the 2/3 majority: the pooled head learnt
    task, cfg, state, best = load_run(run)
    model, tok = task.build_model(str(best), cfg, state, for_training=False)
    assert type(model.get_base_model()).__name__ == "Gemma3TextForPooledClassification"
    assert model.get_base_model().config.cls_pooling == "mean"
    norm = model.get_base_model().head_norm.modules_to_save["default"]  # the trained copy beside the adapter
    assert norm.ready.item() == 1 and not torch.allclose(norm.std, torch.ones_like(norm.std))
    saved = [json.loads(x) for x in (run / "eval/eval/predictions.jsonl").read_text().splitlines()]
    rows = [json.loads(x) for x in eval_f.read_text().splitlines()]
    again = task.predict(model, tok, rows, cfg, state)
    by_id = {p["id"]: p for p in saved}
    for p in again:
        assert p["label"] == by_id[p["id"]]["label"]
        for lab, prob in p["probs"].items():
            assert prob == pytest.approx(by_id[p["id"]]["probs"][lab], abs=1e-5)
    # Exported with the adapter merged, the folder evaluates as a plain model with the same pooled head.
    from tasktune.export import export_run
    from tasktune.run import evaluate

    export_run(str(run), str(tmp_path / "merged"), merge_lora=True)
    assert json.loads((tmp_path / "merged/config.json").read_text())["cls_pooling"] == "mean"
    plain = evaluate(model=str(tmp_path / "merged"), task_name="classification", data=str(eval_f),
                     out=str(tmp_path / "plain_eval"))
    assert plain["accuracy"] == pytest.approx(metrics["accuracy"])


@pytest.mark.parametrize("overrides, message", [
    (["task.method=label_scoring", "task.prompt=say {text}", "task.verbalizer={neg: a, pos: b}", "task.pooling=mean"],
     "task.pooling applies to task.method head"),
    (["task.standardize=true"], "task.standardize needs task.pooling mean or last"),
])
def test_refused_pooling_combinations(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, ["task=classification", "model.name=m", *overrides])
