"""extractive_qa through the real code path: CLI train -> eval --tune-null-threshold -> predict, LoRA, the loss."""

from __future__ import annotations

import io
import json

import pytest
import torch
from conftest import write_jsonl
from qa_data import QUESTIONS, make_records, qa_rows
from test_cli_e2e import tasktune

from tasktune.cli import main
from tasktune.config import load_config


def _files(tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(make_records(120, seed=1)))
    eval_rows = [{**r, "id": f"ev-{r['id']}"} for r in qa_rows(make_records(30, seed=2))]  # ids apart from train's
    eval_ = write_jsonl(tmp_path / "eval.jsonl", eval_rows)
    return train, eval_


def test_decoder_field_extraction_through_the_cli(qa_qwen, tmp_path, capsys, monkeypatch):
    train, eval_ = _files(tmp_path)
    cfg = tmp_path / "qa.yaml"
    cfg.write_text(f"task: extractive_qa\nmodel:\n  name: {qa_qwen}\n  max_length: 64\n"
                   f"data:\n  train: {train}\n  eval: {eval_}\ntrain:\n  epochs: 12\n  batch_size: 16\n"
                   f"  learning_rate: 1.0e-2\n  logging_steps: 20\n", encoding="utf-8")
    run = tmp_path / "run"
    out = tasktune("train", cfg, f"output_dir={run}", "task.doc_stride=16")
    assert json.loads(out.stdout)["f1"] > 80
    meta = json.loads((run / "best/tasktune.json").read_text())
    assert meta["state"]["fields"] == dict(sorted(QUESTIONS.items())) and meta["state"]["language"] == "en"
    history = json.loads((run / "metrics_history.json").read_text())
    assert any("eval_f1" in h for h in history)  # real EM/F1 during training, not only the loss
    # The null threshold was fitted after training on the eval rows only (none of them trained on).
    split = json.loads((run / "data.json").read_text())["split"]
    fitted = meta["thresholds_fitted_on"]
    assert fitted["split"] == "eval" and sorted(fitted["ids"]) == sorted(split["eval_ids"])
    assert not set(fitted["ids"]) & set(split["train_ids"])
    assert meta["state"]["null_threshold"] == fitted["report"]["all"]["threshold"]

    assert main(["eval", str(run), "--tune-null-threshold"]) == 0
    tuned = json.loads((run / "eval/eval/metrics.json").read_text())
    assert tuned["f1"] >= tuned["before_tuning"]["f1"] - 1e-9
    assert "all" in tuned["thresholds"] and "no_answer_precision" in tuned and "per_field" in tuned
    state = json.loads((run / "best/tasktune.json").read_text())["state"]
    assert state["null_threshold"] == tuned["thresholds"]["all"]["threshold"]

    records = make_records(10, seed=3)
    write_jsonl(tmp_path / "records.jsonl", [{"id": r["id"], "text": r["text"]} for r in records])
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(tmp_path / "records.jsonl"),
                 "--output", str(tmp_path / "structured.jsonl")]) == 0
    structured = [json.loads(x) for x in (tmp_path / "structured.jsonl").read_text().splitlines()]
    assert [s["id"] for s in structured] == [r["id"] for r in records]
    right = total = 0
    for s, r in zip(structured, records):
        assert set(s["fields"]) == set(QUESTIONS)
        for field, got in s["fields"].items():
            total += 1
            right += got["value"] == r["fields"][field]
            if got["value"] is not None:
                assert r["text"][got["start"]:got["end"]] == got["value"] and isinstance(got["score"], float)
    assert right / total > 0.8

    assert main(["predict", str(run), "--text", "Name: Bob Stone. City: Oslo. Job: pilot.",
                 "--question", "Which city?"]) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert one["answer"] == "Oslo" and one["start"] == "Name: Bob Stone. City: Oslo.".index("Oslo")
    assert len(one["candidates"]) >= 1

    # typed lines are records: every field of each line (no --question)
    monkeypatch.setattr("sys.stdin", io.StringIO("Name: Carol King. Job: nurse.\n\n"))
    assert main(["predict", str(run), "--interactive"]) == 0
    typed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert typed["fields"]["name"]["value"] == "Carol King" and typed["fields"]["city"]["value"] is None


@pytest.mark.parametrize("features", ["token", "bilinear"])  # bilinear with the span-length prior
def test_lora_span_head_is_saved_and_reloaded(qa_bert, tmp_path, features):
    from tasktune.run import load_run, predict, train

    train_file, eval_ = _files(tmp_path)
    cfg = load_config(None, ["task=extractive_qa", f"model.name={qa_bert}", "model.max_length=64",
                             f"task.span_features={features}", f"task.span_length_prior={features == 'bilinear'}",
                             "task.doc_stride=16", "model.lora={r: 4, alpha: 8, dropout: 0.0}",
                             f"data.train={train_file}", f"data.eval={eval_}", f"output_dir={tmp_path / 'run'}",
                             "train.epochs=2", "train.batch_size=16", "train.learning_rate=5e-3",
                             "task.short_field_weight=2", "task.null_margin=1", "task.null_margin_weight=0.5",
                             "train.label_smoothing=0.1", "train.eval_during_training=false"])
    train(cfg)
    best = tmp_path / "run/best"
    assert (best / "adapter_config.json").is_file()
    adapter = json.loads((best / "adapter_config.json").read_text())
    assert {"span_head", "null_head"} <= set(adapter["modules_to_save"])
    assert "span_head" not in adapter["target_modules"]
    if features == "bilinear":  # the pair term trained (its end half starts at 0) and saved with the adapter
        from safetensors.torch import load_file

        saved = load_file(best / "adapter_model.safetensors")
        pair = [v for k, v in saved.items() if "pair_head" in k]
        assert len(pair) == 1 and pair[0].shape == (128, 32) and pair[0][64:].abs().sum() > 0
        prior = [v for k, v in saved.items() if "length_head" in k]
        assert len(prior) == 1 and prior[0].shape == (2, 16) and prior[0].abs().sum() > 0
    saved = [json.loads(x) for x in (tmp_path / "run/eval/eval/predictions.jsonl").read_text().splitlines()]
    task, _, _, _ = load_run(tmp_path / "run")
    rows = [json.loads(x) for x in eval_.read_text().splitlines()]
    again = predict(str(tmp_path / "run"), input=str(eval_), output=str(tmp_path / "p.jsonl"))
    assert [p["candidates"][0]["score"] for p in again] == pytest.approx(
        [p["candidates"][0]["score"] for p in saved], abs=1e-3)
    assert len(again) == len(rows) and task.name == "extractive_qa"

    # A merged export is a plain span model folder: same logits as the adapter, head_norm included.
    from tasktune.export import export_run

    export_run(str(tmp_path / "run"), str(tmp_path / "merged"), merge_lora=True)
    task, cfg, state, _ = load_run(tmp_path / "run")
    adapted, tok = task.build_model(str(best), cfg, state, for_training=False)
    merged, _ = task.build_model(str(tmp_path / "merged"), cfg.model_copy(
        update={"model": cfg.model.model_copy(update={"lora": None})}), state, for_training=False)
    assert bool(merged.head_norm.ready)
    batch = tok(["Which city?"], ["Name: Bob Stone. City: Oslo."], return_tensors="pt")
    with torch.no_grad():
        a, b = adapted.eval()(**batch).logits, merged.eval()(**batch).logits
    assert torch.allclose(a, b, atol=1e-4), (a, b)


def _logits(valid_len: int, length: int = 6):
    logits = torch.zeros(2, 1 + length, 2)
    logits[:, 1 + valid_len:] = torch.finfo(torch.float32).min
    return logits


def test_span_loss_smooths_over_valid_positions_and_weights_short_answers():
    from tasktune.tasks.extractive_qa import span_loss

    cfg = load_config(None, ["model.name=x", "task=extractive_qa"]).task
    labels = torch.tensor([[1, 2, 3], [0, 0, 0]])
    # uniform logits over null + 3 valid tokens: every position has probability 1/4 (the loss sums 2 windows)
    plain = span_loss(_logits(3), labels, cfg, 0.0) / 2
    assert plain.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
    smoothed = span_loss(_logits(3), labels, cfg, 0.2) / 2
    assert smoothed.item() == pytest.approx(plain.item())  # smoothing stays on the 4 valid slots: finite, equal
    short = cfg.model_copy(update={"short_field_weight": 3.0})
    # row 0's answer has 3 characters (short): weight 3, row 1 weight 1 -> mean (3 + 1) / 2 = 2x
    assert (span_loss(_logits(3), labels, short, 0.0) / 2).item() == pytest.approx(2 * plain.item())
    boost = cfg.model_copy(update={"short_field_boost": 3.0})
    assert (span_loss(_logits(3), labels, boost, 0.0) / 2).item() == pytest.approx(1.5 * plain.item())


def test_bilinear_span_loss_scores_the_end_given_the_gold_start():
    from tasktune.tasks.extractive_qa import span_loss

    cfg = load_config(None, ["model.name=x", "task=extractive_qa"]).task
    torch.manual_seed(0)
    logits = torch.randn(2, 7, 2 + 2 * 3)
    logits[:, 0, 2:] = 0  # the null position carries no pair term
    labels = torch.tensor([[2, 4, 3], [0, 0, 0]])
    u, v = logits[0, 2, 2:5], logits[0, :, 5:]
    end = logits[0, :, 1] + v @ u               # row 0: end scores given start 2
    expect = (torch.nn.functional.cross_entropy(logits[0, :, 0], torch.tensor(2))
              + torch.nn.functional.cross_entropy(end, torch.tensor(4))) / 2
    # row 1 (no answer): the start is null, whose pair term is 0, so its end scores are plain
    expect = expect + (torch.nn.functional.cross_entropy(logits[1, :, 0], torch.tensor(0))
                       + torch.nn.functional.cross_entropy(logits[1, :, 1], torch.tensor(0))) / 2
    assert span_loss(logits, labels, cfg, 0.0).item() == pytest.approx(expect.item(), rel=1e-5)


def test_span_length_prior_is_a_function_of_the_length_only():
    from tasktune.models.span_head import SpanLengthPrior

    prior = SpanLengthPrior()
    torch.manual_seed(0)
    torch.nn.init.normal_(prior.coef)
    u, v = prior(40, "cpu")
    pair = u @ v.T                                      # pair[s, e] = u(s) . v(e)
    d = torch.arange(40)[None, :] - torch.arange(40)[:, None]
    assert torch.allclose(pair, prior.score(d), atol=1e-4)
    assert torch.allclose(pair[3, 5], pair[20, 22], atol=1e-4) and not torch.allclose(pair[3, 5], pair[3, 9])


def test_null_margin_loss_pushes_null_on_negatives_only_when_violated():
    from tasktune.tasks.extractive_qa import span_loss

    cfg = load_config(None, ["model.name=x", "task=extractive_qa", "task.null_margin=1",
                             "task.null_margin_weight=1"]).task
    base = load_config(None, ["model.name=x", "task=extractive_qa"]).task
    logits = _logits(3)
    logits[1, 0] = 5.0  # the negative row's null beats every span by 10 > margin: no extra loss there
    labels = torch.tensor([[1, 2, 3], [0, 0, 0]])
    extra = span_loss(logits, labels, cfg, 0.0) / 2 - span_loss(logits, labels, base, 0.0) / 2
    # row 0: gold span 0 vs null 0 -> hinge 1 - 0 = 1; row 1: satisfied -> 0; mean over 2 rows
    assert extra.item() == pytest.approx(0.5)


def test_zero_shot_generation_keeps_only_answers_found_in_the_context(qa_qwen, qa_bert):
    from tasktune.tasks.qa_generate import _clean, generate_answers, is_causal_lm

    assert _clean(" 北京。\n其他", "首都是北京") == ("北京", 3)
    assert _clean("无", "首都是北京") == (None, None)
    assert _clean("上海", "首都是北京") == (None, None)  # not extractive: no answer
    rows = qa_rows(make_records(2, seed=4))[:3]
    assert is_causal_lm(qa_qwen) and not is_causal_lm(qa_bert)
    preds = generate_answers(qa_qwen, rows, "en", batch_size=2, max_new_tokens=3)
    assert [p["id"] for p in preds] == [r["id"] for r in rows]
    for p, r in zip(preds, rows):
        assert p["answer"] is None or r["context"][p["start"]:p["end"]] == p["answer"]


def test_head_reads_features_standardised_on_the_first_training_batch(qa_qwen, tmp_path):
    from transformers import AutoConfig

    from tasktune.models.span_head import span_model_class

    cls = span_model_class(AutoConfig.from_pretrained(qa_qwen))
    model, info = cls.from_pretrained(qa_qwen, output_loading_info=True)
    assert not info["missing_keys"]                 # new heads are expected: no "MISSING" load report
    assert torch.all(model.span_head.weight == 0)   # ... and still initialised
    norm = model.head_norm
    assert not bool(norm.ready) and torch.all(norm.std == 1)
    ids = torch.randint(5, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    model.eval()
    model(input_ids=ids, attention_mask=mask)
    assert not bool(norm.ready)  # evaluation never measures
    model.train()
    model(input_ids=ids, attention_mask=mask)
    hidden = getattr(model, model.base_model_prefix)(input_ids=ids, attention_mask=mask).last_hidden_state.detach()
    real = hidden[mask.bool()]
    assert bool(norm.ready)
    assert torch.allclose(norm.mean, real.mean(0), atol=1e-5)
    assert torch.allclose(norm((hidden * 0 + real.mean(0))), torch.zeros_like(hidden), atol=1e-5)
    before = norm.mean.clone()
    model(input_ids=ids + 1, attention_mask=mask)
    assert torch.equal(norm.mean, before)  # measured once, then fixed

    model.save_pretrained(tmp_path / "saved")
    again = cls.from_pretrained(tmp_path / "saved")
    assert bool(again.head_norm.ready) and torch.equal(again.head_norm.mean, before)
    assert torch.equal(again.head_norm.std, norm.std)


def test_token_next_span_features_let_a_causal_start_see_the_next_token(qa_qwen, tmp_path):
    from transformers import AutoConfig

    from tasktune.models.span_head import span_model_class

    def model_with(features):
        config = AutoConfig.from_pretrained(qa_qwen)
        config.span_features = features
        model = span_model_class(config).from_pretrained(qa_qwen, config=config).eval()
        torch.nn.init.normal_(model.span_head.weight)  # a trained head: zero weights would hide everything
        return model

    ids = torch.randint(5, 100, (1, 10))
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 7) % 100 + 5      # only token 6 differs
    mask = torch.ones_like(ids)
    for features, sees_next in (("token", False), ("token_next", True)):
        model = model_with(features)
        with torch.no_grad():
            a = model(input_ids=ids, attention_mask=mask).logits[0, 1:]
            b = model(input_ids=changed, attention_mask=mask).logits[0, 1:]
        assert torch.allclose(a[:5], b[:5], atol=1e-5)          # positions before 5 see neither
        assert torch.allclose(a[5], b[5], atol=1e-5) != sees_next  # position 5 sees token 6 only with token_next
    # Right padding: the last real token reads zeros for "next", so what the padding holds changes nothing.
    padded, mask2 = torch.cat([ids, ids[:, :3]], 1), torch.cat([mask, torch.zeros(1, 3, dtype=mask.dtype)], 1)
    other = torch.cat([ids, ids[:, 3:6]], 1)
    with torch.no_grad():
        x = model(input_ids=padded, attention_mask=mask2).logits[0, 1:11]
        y = model(input_ids=other, attention_mask=mask2).logits[0, 1:11]
    assert torch.allclose(x, y, atol=1e-5)
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved/config.json").read_text())["span_features"] == "token_next"
    again = span_model_class(AutoConfig.from_pretrained(tmp_path / "saved")).from_pretrained(tmp_path / "saved").eval()
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids, attention_mask=mask).logits, model(input_ids=ids,
                              attention_mask=mask).logits, atol=1e-5)
