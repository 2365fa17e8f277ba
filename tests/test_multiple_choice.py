"""Multiple choice: MAP@3 as the competition scored it, option scoring against brute force, mixed option
counts in one batch, the submission file, converters, row errors, and train -> eval -> predict via the CLI."""

from __future__ import annotations

import json
import random

import pytest
import torch
from conftest import NEG_WORDS, POS_WORDS, write_jsonl

from tasktune.cli import main
from tasktune.config import load_config


def make_mc_rows(n: int, seed: int = 0) -> list[dict]:
    """Pick the praising option: one option holds a positive word, the others negative ones; 2-4 options."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = 2 + i % 3
        options = [f"the staff were {w}" for w in rng.sample(NEG_WORDS, k - 1)]
        answer = rng.randrange(k)
        options.insert(answer, f"the staff were {rng.choice(POS_WORDS)}")
        rows.append({"id": f"m{i}", "question": "which review is positive", "options": options, "answer": answer,
                     "context": "the hotel room"})
    return rows


def test_map_at_3_worked_cases():
    from tasktune.metrics.ranking import average_precision_at

    cases = {("A", "B", "C"): 1.0, ("B", "A", "C"): 0.5, ("B", "C", "A"): 1 / 3, ("A", "A", "A"): 1.0,
             ("B", "A", "A"): 0.5, ("B", "C", "D"): 0.0}
    for guesses, expected in cases.items():
        assert average_precision_at(list(guesses), "A") == pytest.approx(expected)


@pytest.mark.parametrize("decoder,scoring", [("tiny_qwen", "letter"), ("tiny_qwen", "text"), ("tiny_gemma", "text"),
                                             ("tiny_qwen", "pmi")])
def test_option_scores_equal_brute_force_and_masked_options_never_win(decoder, scoring, request):
    from transformers import AutoModelForCausalLM

    from tasktune.tasks.multiple_choice import LETTERS, MultipleChoice

    tiny_qwen = request.getfixturevalue(decoder)  # gemma: prompts longer than its sliding window of 8

    text_score = "pmi" if scoring == "pmi" else "sum"  # pmi: the text's sum minus its sum after the prefix alone
    scoring = "text" if scoring == "pmi" else scoring
    cfg = load_config(None, ["task=multiple_choice", f"model.name={tiny_qwen}", "model.max_length=64",
                             f"task.scoring={scoring}", f"task.text_score={text_score}", "task.answer_prefix=' answer:'"])
    task = MultipleChoice()
    # 2, 3 and 4 options in one batch; prompts of different lengths (left padding, positions per row).
    rows = [task.parse_row({**r, "context": "the hotel room " * (1 + 3 * i)}, cfg, None, True)
            for i, r in enumerate(make_mc_rows(3))]
    model, tok = task.build_model(tiny_qwen, cfg, {}, for_training=False)
    feats = task.prepare(rows, tok, cfg, {})
    batch = task.collator(tok, cfg, {})(feats)
    with torch.no_grad():
        scores = task._scores(model.eval(), batch, cfg)
    assert torch.isinf(scores[0, 2:]).all() and torch.isfinite(scores[2, :4]).all()   # row 0 has 2 options
    plain = AutoModelForCausalLM.from_pretrained(tiny_qwen).eval()

    def logprob(prompt: list[int], target: list[int]):
        with torch.no_grad():
            logp = plain(torch.tensor([prompt + target])).logits[0].log_softmax(-1)
        return sum(logp[len(prompt) + k - 1, t] for k, t in enumerate(target))

    premise = tok(" answer:", add_special_tokens=False)["input_ids"]
    for b, (f, row) in enumerate(zip(feats, rows)):
        for j, option in enumerate(row["options"]):
            target = tok(LETTERS[j] if scoring == "letter" else option, add_special_tokens=False)["input_ids"]
            expected = logprob(f["prompt_ids"], target[:1] if scoring == "letter" else target)  # letters: one token
            if text_score == "pmi":
                expected = expected - logprob(tok("", add_special_tokens=True)["input_ids"] + premise, target)
            assert scores[b, j].item() == pytest.approx(expected.item(), abs=1e-4), (b, j)
    preds = task.predict(model, tok, rows, cfg, {}, batch_size=3)
    assert all(p["prediction"] in LETTERS[:len(r["options"])] for p, r in zip(preds, rows))
    assert all(sorted(p["ranked"]) == list(LETTERS[:len(r["options"])]) for p, r in zip(preds, rows))


def test_pmi_without_an_answer_prefix_is_refused(tiny_qwen):
    from tasktune.errors import UserError

    with pytest.raises(UserError, match="non-empty answer_prefix"):
        load_config(None, ["task=multiple_choice", f"model.name={tiny_qwen}", "task.scoring=text",
                           "task.text_score=pmi", "task.answer_prefix=''"])


@pytest.mark.parametrize("checkpointing,text_score", [(False, "mean"), (True, "mean"), (False, "pmi")])
def test_text_scoring_reads_each_prompt_once_with_the_gradients_of_separate_sequences(tiny_gemma, checkpointing,
                                                                                     text_score):
    from transformers import AutoModelForCausalLM

    from tasktune.tasks.multiple_choice import MultipleChoice

    cfg = load_config(None, ["task=multiple_choice", f"model.name={tiny_gemma}", "model.max_length=64",
                             "task.scoring=text", f"task.text_score={text_score}", "task.answer_prefix=' answer:'"])
    task = MultipleChoice()
    rows = [task.parse_row({**r, "context": "the hotel room " * (1 + 3 * i)}, cfg, None, True)
            for i, r in enumerate(make_mc_rows(3))]
    _, tok = task.build_model(tiny_gemma, cfg, {}, for_training=False)
    feats = task.prepare(rows, tok, cfg, {})
    batch = task.collator(tok, cfg, {})(feats)
    assert batch["input_ids"].shape[0] == 3 and batch["cont_ids"].shape[0] == 9  # 3 prompts, 2 + 3 + 4 options
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma).train()
    if checkpointing:  # no KV cache under checkpointing: one sequence per option from the same batch
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    task.compute_loss(model, batch, cfg, {}).backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    loss = torch.zeros(())

    def logprobs(prompt, option):
        logp = model(input_ids=torch.tensor([prompt + option])).logits[0].log_softmax(-1)
        return torch.stack([logp[len(prompt) + k - 1, t] for k, t in enumerate(option)])

    premise = tok("", add_special_tokens=True)["input_ids"] + tok(" answer:", add_special_tokens=False)["input_ids"]
    for f in feats:
        scores = []
        for option in f["option_ids"]:
            if text_score == "pmi":  # the gradient flows through the premise's term too
                scores.append(logprobs(f["prompt_ids"], option).sum() - logprobs(premise, option).sum())
            else:
                scores.append(logprobs(f["prompt_ids"], option).mean())
        loss = loss + torch.nn.functional.cross_entropy(torch.stack(scores)[None], torch.tensor([f["labels"]]))
    loss.backward()
    for name, param in model.named_parameters():
        assert torch.allclose(shared[name], param.grad, atol=1e-5), name


def test_permutations_average_over_cyclic_shifts(tiny_qwen):
    from tasktune.tasks.multiple_choice import MultipleChoice

    task = MultipleChoice()
    base = ["task=multiple_choice", f"model.name={tiny_qwen}", "model.max_length=64"]
    rows = [task.parse_row(r, load_config(None, base), None, True) for r in make_mc_rows(3, seed=1)]
    model, tok = task.build_model(tiny_qwen, load_config(None, base), {}, for_training=False)
    shifted = [task.predict(model, tok, [{**r, "options": r["options"][s:] + r["options"][:s],
                                          "answer": None} for r in rows[2:]], load_config(None, base), {}, 2)[0]
               for s in range(4)]
    averaged = task.predict(model, tok, rows, load_config(None, base + ["task.permutations=4"]), {}, 2)
    # Row 2 has 4 options: averaging 4 shifts equals averaging the 4 rotated rows' probabilities by option.
    opts = rows[2]["options"]
    for j, option in enumerate(opts):
        mean = sum(next(v for k, v in p["probs"].items() if "ABCD".index(k) == (j - s) % 4)
                   for s, p in enumerate(shifted)) / 4
        assert averaged[2]["probs"]["ABCD"[j]] == pytest.approx(mean, abs=1e-5)


def test_converters_and_row_errors(tiny_bert, tmp_path, capsys):
    c3 = tmp_path / "c3.json"
    c3.write_text(json.dumps([[["男：你好。", "女：你好。"], [{"question": "他们在做什么？", "choice": ["打招呼", "吃饭"],
                                                              "answer": "打招呼"},
                                                             {"question": "?", "choice": ["a", "a"], "answer": "a"}],
                               "d1"]], ensure_ascii=False), encoding="utf-8")
    assert main(["data", "convert", "--from", "c3", str(c3), str(tmp_path / "c3.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "c3.jsonl").read_text().splitlines()]
    assert rows == [{"id": "d1-0", "context": "男：你好。\n女：你好。", "question": "他们在做什么？",
                     "options": ["打招呼", "吃饭"], "answer": "打招呼"}]
    left = [json.loads(x) for x in (tmp_path / "c3.jsonl.left_out.jsonl").read_text().splitlines()]
    assert left == [{"id": "d1-1", "item": 1, "reason": "duplicate choices"}]
    kaggle = tmp_path / "train.csv"
    kaggle.write_text("id,prompt,A,B,C,D,E,answer\n0,Which is a gas?,iron,helium,salt,wood,glass,B\n")
    assert main(["data", "convert", "--from", "kaggle-mc", str(kaggle), str(tmp_path / "k.jsonl")]) == 0
    k = json.loads((tmp_path / "k.jsonl").read_text())
    assert k["options"][1] == "helium" and k["answer"] == "B"
    capsys.readouterr()
    bad = [{"question": "q", "options": ["a", "b"], "answer": "c"}, {"question": "q", "options": ["a"], "answer": 0}]
    for i, row in enumerate(bad):
        write_jsonl(tmp_path / "bad.jsonl", make_mc_rows(4) + [row])
        cfg = tmp_path / "c.yaml"
        cfg.write_text("{}\n")
        assert main(["data", "validate", str(cfg), "task=multiple_choice", f"model.name={tiny_bert}",
                     f"data.train={tmp_path / 'bad.jsonl'}", "data.eval=null"]) == 2
        err = capsys.readouterr().err
        assert "bad.jsonl line 5" in err and ("matches no option" if i == 0 else "at least 2") in err


@pytest.mark.parametrize("method,text_score", [("head", "mean"), ("label_scoring", "mean"), ("label_scoring", "pmi")])
def test_train_eval_predict_submission_through_the_cli(method, text_score, tiny_bert, tiny_qwen, tmp_path, capsys):
    """The head on an encoder; label scoring of each option's text on a decoder (a tiny random decoder does not
    learn to point at letters in a few steps; letter scoring is checked against brute force above)."""
    train = write_jsonl(tmp_path / "train.jsonl", make_mc_rows(90, seed=2))
    eval_ = write_jsonl(tmp_path / "eval.jsonl", make_mc_rows(30, seed=3))
    model = tiny_bert if method == "head" else tiny_qwen
    cfg = tmp_path / "mc.yaml"
    scoring = "text" if method == "label_scoring" else "letter"
    cfg.write_text(f"task: {{name: multiple_choice, method: {method}, scoring: {scoring}, text_score: {text_score}, "
                   "answer_prefix: ' answer:'}\n"
                   f"model: {{name: {model}, max_length: 48}}\ndata: {{train: {train}, eval: {eval_}}}\n"
                   "train: {epochs: 6, batch_size: 8, learning_rate: 5.0e-3, best_metric: eval_map@3}\n"
                   "baseline: {after_training: true}\n", encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", str(cfg), f"output_dir={run}"]) == 0
    out = json.loads(capsys.readouterr().out)
    # Random picks right ~1/3 of the time on 2-4 options; the tuned model learnt which option praises.
    assert out["tuned"]["accuracy"] > out["random"]["accuracy"] + 0.2
    assert out["tuned"]["map@3"] >= out["tuned"]["accuracy"]
    metrics = json.loads((run / "eval/eval/metrics.json").read_text())
    assert set(metrics["per_option_count"]) == {"2", "3", "4"}
    test = write_jsonl(tmp_path / "test.jsonl", [{k: v for k, v in r.items() if k != "answer"}
                                                  for r in make_mc_rows(5, seed=4)])
    assert main(["predict", str(run), "--input", str(test), "--output", str(tmp_path / "p.jsonl"),
                 "--submission", str(tmp_path / "submission.csv")]) == 0
    lines = (tmp_path / "submission.csv").read_text().splitlines()
    assert lines[0] == "id,prediction" and len(lines) == 6
    rows = make_mc_rows(5, seed=4)
    for line, row in zip(lines[1:], rows):
        rid, guesses = line.split(",")
        assert rid == row["id"] and len(guesses.split(" ")) == min(3, len(row["options"]))
    assert main(["compare", str(run), "--samples", "100"]) == 0


def test_open_book_puts_retrieved_passages_in_the_context_and_cuts_only_the_context(ret_bert, tiny_qwen,
                                                                                      retrieval_files, tmp_path):
    from transformers import AutoTokenizer

    from tasktune.indexing import index_build
    from tasktune.tasks.multiple_choice import MultipleChoice, _fit, open_book

    corpus, _, _ = retrieval_files
    index_build(ret_bert, str(corpus), str(tmp_path / "idx"))
    cfg = load_config(None, ["task=multiple_choice", f"model.name={tiny_qwen}", "model.max_length=80",
                             f"task.open_book={{index: {tmp_path / 'idx'}, k: 2, separator: ' | '}}",
                             "task.context_template='{context} #### '"])
    rows = [{"id": "x", "question": "where does the fox live", "options": ["near the forest", "in the sea"],
             "context": "a note", "answer": 0}]
    booked = open_book(rows, cfg)
    texts = {json.loads(x)["id"]: json.loads(x)["text"] for x in corpus.read_text().splitlines()}
    assert len(booked[0]["retrieved_ids"]) == 2
    assert booked[0]["context"] == " | ".join(["a note"] + [texts[d] for d in booked[0]["retrieved_ids"]])
    assert open_book(booked, cfg) == booked  # retrieved once: rows that have passages keep them
    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    feats = MultipleChoice().prepare(booked, tok, cfg, {})
    rest = " #### where does the fox live\nA. near the forest\nB. in the sea\n答案："
    tail = tok(rest, add_special_tokens=False)["input_ids"]
    ids = feats[0]["prompt_ids"]
    assert len(ids) <= 79 and ids[-len(tail):] == tail                    # the question and options kept whole
    assert "a note | the".startswith(tok.decode(ids[:-len(tail)]).strip()[:12])  # the context, cut from its end
    long = _fit(tok, "word " * 200, rest, 90)
    assert len(long) == 90 and long[-len(tail):] == tail and tok.decode(long[:3]).strip().startswith("word")
    preds = MultipleChoice().predict(MultipleChoice().build_model(tiny_qwen, cfg, {}, False)[0], tok, rows, cfg, {})
    assert preds[0]["retrieved_ids"] == booked[0]["retrieved_ids"]


def test_ensemble_weights_beat_every_member_on_their_rows():
    import math

    from tasktune.tasks.mc_ensemble import blend, fit_weights

    rng = random.Random(0)
    gold = [rng.randrange(3) for _ in range(200)]
    good = [[0.8 if j == g else 0.1 for j in range(3)] for g in gold]
    noisy = [[x / sum(r) for x in r] for r in ([rng.random() + 1.5 * (j == g) for j in range(3)] for g in gold)]
    weights = fit_weights([good, noisy], gold)
    assert abs(sum(weights) - 1) < 1e-6 and min(weights) >= 0 and weights[0] > weights[1]

    def log_loss(probs):
        return -sum(math.log(p[g]) for p, g in zip(probs, gold)) / len(gold)

    # The optimum may sit at a corner, which a softmax reaches only in the limit: within 1e-4.
    assert log_loss(blend([good, noisy], weights)) <= min(log_loss(good), log_loss(noisy)) + 1e-4


def test_ensemble_run_through_the_cli(tiny_bert, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", make_mc_rows(60, seed=5))
    dev = write_jsonl(tmp_path / "dev.jsonl", make_mc_rows(30, seed=6))
    runs = []
    for seed, lr in ((1, "5.0e-3"), (2, "1.0e-3")):
        cfg = tmp_path / f"m{seed}.yaml"
        cfg.write_text(f"task: {{name: multiple_choice, method: head}}\nmodel: {{name: {tiny_bert}, max_length: 48}}\n"
                       f"data: {{train: {train}, eval: null}}\ntrain: {{epochs: 3, batch_size: 8, learning_rate: {lr}, "
                       f"seed: {seed}}}\n", encoding="utf-8")
        assert main(["train", str(cfg), f"output_dir={tmp_path / f'run{seed}'}"]) == 0
        runs.append(str(tmp_path / f"run{seed}"))
    capsys.readouterr()
    assert main(["ensemble", *runs, "--data", str(dev), "--out", str(tmp_path / "ens")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["weights"]) == {"run1", "run2"} and abs(sum(report["weights"].values()) - 1) < 1e-6
    assert main(["compare", str(tmp_path / "ens"), "--split", "dev", "--samples", "100",
                 "--out", str(tmp_path / "c.json")]) == 0
    assert set(json.loads((tmp_path / "c.json").read_text())["methods"]) == {"ens", "run1", "run2"}
    assert main(["eval", str(tmp_path / "ens"), "--data", str(dev)]) == 0   # predicts by running both members
    blended = json.loads((tmp_path / "ens/eval/dev/metrics.json").read_text())
    assert blended["accuracy"] == pytest.approx(report["blend_on_fitted_rows"]["accuracy"])
    assert main(["eval", str(tmp_path / "ens")]) == 2
    assert "pass --data FILE" in capsys.readouterr().err
