"""SFT: the three row formats, the prompt mask, trimmed logits, prompt cutting, generation metrics by hand,
and train -> eval -> predict through the CLI on a tiny decoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_rows, write_jsonl

from tasktune.cli import main
from tasktune.config import load_config
from tasktune.tasks.sft import SFT

ALPACA = {"instruction": "say the mood", "input": "the room was great", "output": "positive", "system": "be brief"}
SHAREGPT = {"conversations": [{"from": "system", "value": "be brief"},
                              {"from": "human", "value": "say the mood\n\nthe room was great"},
                              {"from": "gpt", "value": "positive"}]}
MESSAGES = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "say the mood\n\nthe room was great"},
                         {"role": "assistant", "content": "positive"}]}


def _cfg(model, *extra):
    return load_config(None, ["task=sft", f"model.name={model}", "model.max_length=64", *extra])


def _tokenizer(model):
    return SFT().build_model(model, _cfg(model), {}, for_training=False)[1]


def test_formats_give_the_same_ids_and_a_masked_prompt(tiny_qwen):
    from tasktune.tasks.sft import encode_row

    task, cfg, tok = SFT(), _cfg(tiny_qwen), _tokenizer(tiny_qwen)
    feats = [encode_row(tok, task.parse_row(r, cfg, None), cfg)[0] for r in (ALPACA, SHAREGPT, MESSAGES)]
    assert feats[0] == feats[1] == feats[2]
    ids, labels = feats[0]["input_ids"], feats[0]["labels"]
    response = tok("positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ids[-len(response):] == response and labels[-len(response):] == response   # ends with EOS, trained
    assert set(labels[:-len(response)]) == {-100}                                        # prompt not trained
    assert "be brief" in tok.decode(ids) and "say the mood" in tok.decode(ids)
    on_prompt = _cfg(tiny_qwen, "task.train_on_prompt=true")
    assert encode_row(tok, task.parse_row(ALPACA, on_prompt, None), on_prompt)[0]["labels"] == ids


@pytest.mark.parametrize("row, message", [
    ({"output": "x"}, "no instruction"),
    ({"instruction": "a", "output": " "}, "empty response"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "does not end with the assistant"),
    ({"conversations": [{"from": "robot", "value": "hi"}]}, "without a known from"),
])
def test_bad_rows_name_the_problem(tiny_qwen, tmp_path, capsys, row, message):
    write_jsonl(tmp_path / "d.jsonl", [ALPACA, row])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}\n")
    assert main(["data", "validate", str(cfg), "task=sft", f"model.name={tiny_qwen}",
                 f"data.train={tmp_path / 'd.jsonl'}", "data.eval=null"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "d.jsonl line 2" in err and message in err, err


def test_trimmed_logits_give_the_full_logits_loss(tiny_qwen):
    from transformers import AutoModelForCausalLM

    task, cfg, tok = SFT(), _cfg(tiny_qwen), _tokenizer(tiny_qwen)
    rows = [task.parse_row(r, cfg, None) for r in (ALPACA, {"instruction": "another longer prompt here",
                                                           "output": "negative and more words"})]
    batch = task.collator(tok, cfg, {})(task.prepare(rows, tok, cfg, {}))
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen)
    ours = task.compute_loss(model, batch, cfg, {}) / batch["loss_items"]
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
    assert ours.item() == pytest.approx(full.item(), rel=1e-5)
    assert batch["loss_items"] == sum(len(tok(r["response"], add_special_tokens=False)["input_ids"]) + 1 for r in rows)


def test_a_long_prompt_is_cut_before_its_turn_markers_and_counted(tiny_qwen):
    from tasktune.data.dataset import Splits
    from tasktune.tasks.sft import KEEP_TAIL, encode_row, prompt_ids

    task, cfg, tok = SFT(), _cfg(tiny_qwen, "model.max_length=40"), _tokenizer(tiny_qwen)
    long = task.parse_row({"instruction": "say the mood " + "very " * 60, "output": "positive"}, cfg, None)
    short = task.parse_row({"instruction": "hi", "output": "positive"}, cfg, None)
    feat, cut = encode_row(tok, long, cfg)
    full_prompt = prompt_ids(tok, long["messages"][:-1])
    response = tok("positive", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert cut and len(feat["input_ids"]) == 40 and feat["input_ids"][-len(response):] == response
    kept = feat["input_ids"][:-len(response)]
    assert kept[-KEEP_TAIL:] == full_prompt[-KEEP_TAIL:] and kept[:5] == full_prompt[:5]
    splits = Splits([long, short, long], [], None, {"units": "words"})
    assert task.before_training(None, tok, splits, cfg, None).state["train_prompts_cut"] == 2

    # Generation cuts the same way (the instruction's start and the turn markers kept), not just the tail.
    from tasktune.tasks.sft import generate_rows

    class Recorder:  # stands in for the model: records the prompt it is given, answers EOS at once
        device, generation_config = "cpu", None

        def eval(self):
            return self

        def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
            self.seen = input_ids[attention_mask.bool()].tolist()
            return torch.cat([input_ids, torch.full((input_ids.shape[0], 1), tok.eos_token_id)], 1)

    model = Recorder()
    generate_rows(model, tok, [long], cfg.model_copy(update={"task": cfg.task.model_copy(
        update={"max_new_tokens": len(response)})}))
    assert model.seen == kept


def test_generation_metrics_by_hand():
    from tasktune.metrics.generation import text_scores, units

    s = text_scores("项目进度汇报", "项目进度的汇报", "chars")
    # unigrams 6/6 and 6/7; bigrams 4/5 and 4/6; BLEU: p = 1, 4/5, 2/4, 1/3, brevity exp(1 - 7/6)
    assert s["rouge-1"] == pytest.approx(100 * 12 / 13) and s["rouge-2"] == pytest.approx(100 * 8 / 11)
    assert s["bleu-4"] == pytest.approx(100 * (1 * 0.8 * 0.5 / 3) ** 0.25 * 2.718281828 ** (1 - 7 / 6), rel=1e-4)
    e = text_scores("The cat sat", "the cat sat on the mat", "words")
    assert e["rouge-1"] == pytest.approx(100 * 2 * 1 * 0.5 / 1.5) and e["exact_match"] == 0.0
    assert text_scores(" same  text ", "same text", "words")["exact_match"] == 100.0
    assert text_scores(None, "abc", "words")["bleu-4"] == 0.0
    assert units(["项目进度的汇报"]) == "chars" and units(["the cat"]) == "words"


def test_several_references_and_id_lists_by_hand():
    from tasktune.metrics.generation import id_set_scores, text_scores

    one = text_scores("项目进度汇报", "项目进度的汇报", "chars")
    many = text_scores("项目进度汇报", ["完全不同的", "项目进度的汇报"], "chars")
    assert many["rouge-1"] == pytest.approx(one["rouge-1"]) and many["rouge-l"] == pytest.approx(one["rouge-l"])
    # BLEU against several references: the one matching exactly gives every n-gram and its length (brevity 1).
    assert text_scores("项目进度汇报", ["项目进度汇报", "别的"], "chars")["bleu-4"] == pytest.approx(100.0)
    assert text_scores("b", ["a", "b"], "words")["exact_match"] == 100.0
    ids = id_set_scores("3, 7, 9", "3,9,12")
    assert ids["id_precision"] == pytest.approx(200 / 3) and ids["id_f1"] == pytest.approx(200 / 3)
    assert id_set_scores("无", "无")["id_f1"] == 100.0 and id_set_scores("", "5")["id_recall"] == 0.0
    assert id_set_scores("5", "无") == {"id_precision": 0.0, "id_recall": 0.0, "id_f1": 0.0}

    # Through the task: a MUG title row's other titles are references; id metrics only when asked for.
    task = SFT()
    cfg = load_config(None, ["task.name=sft", "task.id_metrics=true", "model.name=m"])
    row = task.parse_row({"instruction": "title?", "output": "预算", "references": ["预算", "预算讨论"]}, cfg, None)
    assert task.gold(row) == ["预算", "预算讨论"]
    state = task.setup([row], cfg)
    scores = task.row_scores([{"generation": "预算讨论", "gold": task.gold(row)}], state)[0]
    assert scores["exact_match"] == 100.0 and scores["id_f1"] == 100.0  # no ids on either side
    plain = task.row_scores([{"generation": "1,2", "gold": "2"}], task.setup([row], load_config(None, ["task=sft", "model.name=m"])))
    assert "id_f1" not in plain[0]


def test_train_eval_predict_through_the_cli(tiny_qwen, tmp_path, capsys):
    """A tiny decoder learns to answer the mood word; the base model beside it does not."""
    def rows(n, seed):
        return [{"id": r["id"], "instruction": "mood of: " + r["text"], "output": r["label"]}
                for r in make_rows(n, seed)]

    write_jsonl(tmp_path / "train.jsonl", rows(120, 2))
    write_jsonl(tmp_path / "eval.jsonl", rows(20, 3))
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"task: {{name: sft, max_new_tokens: 8}}\nmodel: {{name: {tiny_qwen}, max_length: 48}}\n"
                   f"data: {{train: {tmp_path / 'train.jsonl'}, eval: {tmp_path / 'eval.jsonl'}}}\n"
                   "train: {epochs: 8, batch_size: 8, learning_rate: 5.0e-3, seed: 7, eval_during_training: false}\n"
                   "baseline: {after_training: true}\n"
                   f"output_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    assert main(["train", str(cfg)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tuned"]["exact_match"] >= 90 and out["base_model"]["exact_match"] == 0
    preds = [json.loads(x) for x in (tmp_path / "run/eval/eval/predictions.jsonl").read_text().splitlines()]
    assert {"prompt", "generation", "gold"} <= set(preds[0]) and preds[0]["prompt"].startswith("mood of:")
    write_jsonl(tmp_path / "new.jsonl", [{"id": "n1", "instruction": "mood of: great clean hotel"}])
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "new.jsonl"), "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    assert json.loads((tmp_path / "p.jsonl").read_text())["generation"] == "positive"
    # chat through piped stdin: the streamed answer is the run's generation; /reset clears the history.
    import io

    out = io.StringIO()
    monkey_in = io.StringIO("mood of: great clean hotel\n/reset\nmood of: dirty awful room\n/exit\nignored\n")
    from tasktune.chat import chat

    messages = chat(str(tmp_path / "run"), max_new_tokens=8, lines=monkey_in, out=out)
    assert out.getvalue().splitlines() == ["positive", "negative"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["content"] == "negative"


def test_merged_export_generates_what_the_adapter_run_generates(tiny_qwen, tmp_path, capsys, monkeypatch):
    """export --merge-lora: plain AutoModelForCausalLM + the saved chat template give the adapter's greedy text;
    the chat verb reads piped stdin."""
    import io

    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"id": r["id"], "instruction": "mood of: " + r["text"], "output": r["label"]} for r in make_rows(16, 2)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    assert main(["train", str(_write_cfg(tmp_path, tiny_qwen)), "model.lora.r=4", "train.learning_rate=5e-2",
                 "data.eval=null"]) == 0
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "train.jsonl"), "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    ours = [json.loads(x)["generation"] for x in (tmp_path / "p.jsonl").read_text().splitlines()][:4]
    assert any(ours)  # non-empty generations: the comparison below means something
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "merged"), "--merge-lora"]) == 0
    capsys.readouterr()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "merged")
    for row, expected in zip(rows, ours):
        ids = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)["input_ids"]
        new = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False, eos_token_id=tok.eos_token_id,
                             pad_token_id=tok.eos_token_id)[0, ids.shape[1]:]
        assert tok.decode(new, skip_special_tokens=True).strip() == expected
    monkeypatch.setattr("sys.stdin", io.StringIO(rows[0]["instruction"] + "\n"))
    assert main(["chat", str(tmp_path / "merged"), "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.strip() == ours[0]


def _write_cfg(tmp_path, model):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"task: {{name: sft, max_new_tokens: 8}}\nmodel: {{name: {model}, max_length: 48}}\n"
                   f"data: {{train: {tmp_path / 'train.jsonl'}}}\n"
                   "train: {epochs: 1, batch_size: 8, seed: 7, eval_during_training: false}\n"
                   f"output_dir: {tmp_path / 'run'}\n", encoding="utf-8")
    return cfg


def test_mug_meetings_become_instruction_rows(tmp_path, capsys):
    """The MUG CSV (idx, content JSON) -> title / summary / segmentation / action rows; windows and cuts counted."""
    import csv

    sentences = [{"id": i, "speaker": f"no.{i % 2}", "start_time": "0", "end_time": "1", "s": f"第{i}句话。" + "嗯" * 10}
                 for i in range(1, 9)]
    meeting = {"meeting_key": "M1", "sentence_list": sentences,
               "topic_segment_ids": [{"id": 3, "candidate": [{"title": "开场", "key_sentence": ["2"]},
                                                             {"title": "会议开场", "key_sentence": ["1"]}]},
                                     {"id": 8, "candidate": [{"title": "安排", "key_sentence": ["5", "7"]}]}],
               "paragraph_segment_ids": [{"id": 3}], "action_ids": [{"id": 5}]}
    with open(tmp_path / "dev.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerows([["idx", "content"], [0, json.dumps(meeting, ensure_ascii=False)]])

    def convert(task, *extra):
        out = tmp_path / f"{task}.jsonl"
        assert main(["data", "convert", "--from", "mug", str(tmp_path / "dev.csv"), str(out), "--task", task,
                     *extra, "--overwrite"]) == 0
        return json.loads(capsys.readouterr().out), [json.loads(x) for x in out.read_text().splitlines()]

    _, titles = convert("title")
    uh = "嗯" * 10
    assert [r["output"] for r in titles] == ["开场", "安排"] and titles[0]["references"] == ["开场", "会议开场"]
    assert titles[0]["input"] == f"会议内容：\n[no.1]: 第1句话。{uh}\n[no.0]: 第2句话。{uh}\n[no.1]: 第3句话。{uh}"
    _, summary = convert("summary")
    assert [r["output"] for r in summary] == [f"第2句话。{uh}", f"第5句话。{uh}\n第7句话。{uh}"]
    assert f"[5] [no.1]: 第5句话。{uh}" in summary[1]["input"]
    counts, windows = convert("segmentation", "--max-chars", "100")   # lines of 28 characters: 3 per window
    assert [r["output"] for r in windows] == ["3", "无", "8"] and counts["cut"] == 0
    assert windows[1]["input"].splitlines()[1].startswith("[4] ")
    _, actions = convert("action", "--max-chars", "100")
    assert [r["output"] for r in actions] == ["无", "5", "无"]
    counts, cut = convert("title", "--max-chars", "100")              # segment 2: 5 lines of 23 (+1) keep 4
    assert counts["cut"] == 1 and counts["chars_cut"] == 24 and cut[1]["input"].count("\n") == 4
    assert main(["data", "convert", "--from", "mug", str(tmp_path / "dev.csv"), str(tmp_path / "k.jsonl"),
                 "--task", "keyphrase"]) == 2
    assert "has no keyphrases" in capsys.readouterr().err
    # The rows are valid sft rows.
    from tasktune.data.dataset import check_rows, read_rows

    task = SFT()
    rows, table, _ = read_rows(str(tmp_path / "title.jsonl"), task, {})
    assert len(check_rows(task, rows, table.where, _cfg("m"), None)) == 2


def test_packed_batch_gives_the_unpacked_loss(tiny_qwen):
    """train.packing: the same summed loss and item count as padded rows (the engine's forward, compute_loss)."""
    from transformers import AutoModelForCausalLM

    task, tok = SFT(), _tokenizer(tiny_qwen)
    cfg, packed_cfg = _cfg(tiny_qwen, "task.train_on_prompt=true"), _cfg(tiny_qwen, "task.train_on_prompt=true",
                                                                        "train.packing=true", "model.max_length=512")
    rows = [task.parse_row(r, cfg, None) for r in (ALPACA, {"instruction": "a much longer prompt than the first",
                                                           "output": "negative and more"}, MESSAGES)]
    feats = task.prepare(rows, tok, cfg, {})
    model = AutoModelForCausalLM.from_pretrained(tiny_qwen, attn_implementation="sdpa").eval()
    padded, packed = task.collator(tok, cfg, {})(feats), task.collator(tok, packed_cfg, {})(feats)
    assert packed["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in feats))
    assert packed["loss_items"] == padded["loss_items"]
    with torch.no_grad():
        a, b = task.compute_loss(model, padded, cfg, {}), task.compute_loss(model, packed, packed_cfg, {})
    assert b.item() == pytest.approx(a.item(), rel=1e-4)
    # Rows of at most model.max_length: the longest and shortest example share a row, the third gets one of
    # its own, ending in a block of padding.
    lengths = [len(f["input_ids"]) for f in feats]
    width = max(lengths) + min(lengths)
    short = _cfg(tiny_qwen, "task.train_on_prompt=true", "train.packing=true", f"model.max_length={width}")
    two = task.collator(tok, short, {})(feats)
    assert two["input_ids"].shape == (2, width) and two["loss_items"] == padded["loss_items"]
    assert (two["input_ids"] == tok.pad_token_id).any()  # the shorter row ends in padding
    with torch.no_grad():
        assert task.compute_loss(model, two, short, {}).item() == pytest.approx(a.item(), rel=1e-4)
    # A row per example: the padding continues its example's positions, so transformers sees no packing and
    # runs plain causal attention with no mask.
    from transformers.masking_utils import find_packed_sequence_indices

    alone = task.collator(tok, _cfg(tiny_qwen, "train.packing=true", f"model.max_length={max(lengths)}"), {})(feats)
    assert alone["input_ids"].shape == (3, max(lengths)) and (alone["input_ids"] == tok.pad_token_id).any()
    assert find_packed_sequence_indices(alone["position_ids"]) is None
    assert find_packed_sequence_indices(two["position_ids"]) is not None  # two examples share a row there
    # Without restarting positions (one long sequence) the loss differs: the packing is what makes it equal.
    del packed["position_ids"]
    with torch.no_grad():
        assert abs(task.compute_loss(model, packed, packed_cfg, {}).item() - a.item()) > 1e-3


def test_packed_rows_give_the_unpacked_loss_on_gemma_with_a_sliding_window(tiny_gemma):
    """Rows of packed examples (and a padding block) on Gemma 3, whose sliding-window layer (window 8) must combine
    its window with the pack's block mask: the same summed loss as padded rows."""
    from transformers import AutoModelForCausalLM

    task, tok = SFT(), _tokenizer(tiny_gemma)
    cfg = _cfg(tiny_gemma, "task.train_on_prompt=true")
    rows = [task.parse_row(r, cfg, None) for r in (ALPACA, {"instruction": "a much longer prompt than the first one",
                                                           "output": "negative and more"}, MESSAGES)]
    feats = task.prepare(rows, tok, cfg, {})
    lengths = [len(f["input_ids"]) for f in feats]
    assert min(lengths) > 8  # every example is longer than the window
    packed_cfg = _cfg(tiny_gemma, "task.train_on_prompt=true", "train.packing=true",
                      f"model.max_length={max(lengths) + min(lengths)}")
    padded, packed = task.collator(tok, cfg, {})(feats), task.collator(tok, packed_cfg, {})(feats)
    assert packed["input_ids"].shape[0] == 2
    model = AutoModelForCausalLM.from_pretrained(tiny_gemma, attn_implementation="sdpa").eval()
    with torch.no_grad():
        a, b = task.compute_loss(model, padded, cfg, {}), task.compute_loss(model, packed, packed_cfg, {})
    assert b.item() == pytest.approx(a.item(), rel=1e-4)


def test_pack_rows_fills_rows_first_fit_decreasing():
    from tasktune.tasks.sft import pack_rows

    assert pack_rows([300, 200, 250, 100], 512) == [[0, 1], [2, 3]]
    assert pack_rows([600, 10], 512) == [[0], [1]]  # longer than a row: a row of its own
    rows = pack_rows([7, 3, 9, 1, 4, 8, 2], 10)
    assert sorted(i for r in rows for i in r) == list(range(7))  # every sequence once
    assert all(sum([7, 3, 9, 1, 4, 8, 2][i] for i in r) <= 10 for r in rows) and len(rows) == 4


def test_attn_implementation_reaches_the_model_and_keeps_the_packed_loss(tiny_qwen):
    """model.attn_implementation: the loaded model uses the named kernel; eager and sdpa agree on a packed batch."""
    from tasktune.errors import UserError

    task = SFT()
    losses = {}
    for impl in ("eager", "sdpa"):
        cfg = _cfg(tiny_qwen, "task.train_on_prompt=true", "train.packing=true", f"model.attn_implementation={impl}")
        model, tok = task.build_model(tiny_qwen, cfg, {}, for_training=False)
        assert model.config._attn_implementation == impl
        rows = [task.parse_row(r, cfg, None) for r in (ALPACA, MESSAGES)]
        with torch.no_grad():
            losses[impl] = task.compute_loss(model.eval(), task.collator(tok, cfg, {})(task.prepare(rows, tok, cfg, {})),
                                             cfg, {}).item()
    assert losses["eager"] == pytest.approx(losses["sdpa"], rel=1e-4)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="flex_attention trains on GPUs only"):
            task.build_model(tiny_qwen, _cfg(tiny_qwen, "model.attn_implementation=flex_attention"), {})


def test_inspect_counts_formats_and_token_lengths(tiny_qwen, tmp_path, capsys, monkeypatch):
    from tasktune.tasks.sft import encode_row

    monkeypatch.chdir(tmp_path)  # the histogram PNG goes to the working directory (d.lengths.png)
    write_jsonl(tmp_path / "d.jsonl", [ALPACA, SHAREGPT, MESSAGES, {"conversations": "not a list"}])
    assert main(["data", "inspect", str(tmp_path / "d.jsonl"), "--task", "sft", "--model", tiny_qwen]) == 0
    view = json.loads(capsys.readouterr().out)["sft"]
    assert view["formats"] == {"alpaca": 1, "sharegpt": 2, "messages": 1} and view["unreadable_rows"] == 1
    cfg, tok = _cfg(tiny_qwen, "model.max_length=512"), _tokenizer(tiny_qwen)
    length = len(encode_row(tok, SFT().parse_row(ALPACA, cfg, None), cfg)[0]["input_ids"])
    assert view["prompt_tokens"]["max"] + view["response_tokens"]["max"] == length   # the three rows are one example
    assert view["advice"].startswith(f"model.max_length {length} keeps 95%")
    assert (tmp_path / "d.lengths.png").stat().st_size > 1000


def test_tokenised_features_are_cached_by_rows_tokenizer_and_settings(tiny_qwen, tmp_path, monkeypatch):
    from tasktune.engine import features

    monkeypatch.setenv("TASKTUNE_FEATURE_CACHE", str(tmp_path / "cache"))
    task, cfg, tok = SFT(), _cfg(tiny_qwen), _tokenizer(tiny_qwen)
    rows = [task.parse_row(r, cfg, None) for r in (ALPACA, MESSAGES)]
    calls = []
    real = task.prepare
    monkeypatch.setattr(task, "prepare", lambda *a: calls.append(1) or real(*a))
    first = features.prepared(task, rows, tok, cfg, {})
    assert features.prepared(task, rows, tok, cfg, {}) == first and len(calls) == 1   # the second came from disk
    features.prepared(task, rows, tok, _cfg(tiny_qwen, "model.max_length=40"), {})      # another cut-off
    features.prepared(task, rows[:1], tok, cfg, {})                                   # other rows
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    features.prepared(task, rows, tok, cfg, {})                                       # another template
    features.prepared(task, rows, tok, _cfg(tiny_qwen, "data.cache_features=false"), {})
    assert len(calls) == 5 and len(list((tmp_path / "cache").iterdir())) == 4


def test_feature_cache_keys_change_with_the_task_familys_code(tiny_qwen, tmp_path, monkeypatch):
    """Features cached by an older tasktune (another encoding of the rows) are never read by a newer one."""
    import importlib.util
    import sys

    from tasktune.engine.features import cache_key

    def task_from(text):
        path = tmp_path / "family.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"family_{len(text)}", path)
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)  # as an installed family is
        spec.loader.exec_module(module)
        return module.SFT()

    import tasktune.tasks.sft as family

    source = Path(family.__file__).read_text()
    cfg, tok = _cfg(tiny_qwen), _tokenizer(tiny_qwen)
    keys = [cache_key(task_from(text), [{"x": 1}], tok, cfg, {}) for text in (source, source, source + "# v2\n")]
    assert keys[0] == keys[1] != keys[2]


def test_gradient_checkpointing_gives_the_same_lora_gradients(tiny_qwen):
    """model.gradient_checkpointing with LoRA through the task's own build_model and loss (trimmed logits):
    recomputing activations must not change the loss or any adapter gradient."""
    task = SFT()
    lora = "model.lora={r: 4, alpha: 8, dropout: 0.0}"
    grads, losses = [], []
    for extra in ([], ["model.gradient_checkpointing=true"]):
        cfg = _cfg(tiny_qwen, lora, *extra)
        torch.manual_seed(0)
        model, tok = task.build_model(tiny_qwen, cfg, {}, for_training=True)
        for name, p in model.named_parameters():  # LoRA B starts at zero: give it values so A gets gradients too
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.1)
        model.train()
        inner = model.base_model.model  # transformers 5 renamed the flag (the old name warns of removal in v6)
        new_name = hasattr(type(inner), "is_activation_checkpointing")
        assert (inner.is_activation_checkpointing if new_name else inner.is_gradient_checkpointing) == bool(extra)
        batch = task.collator(tok, cfg, {})(task.prepare([task.parse_row(ALPACA, cfg, None)], tok, cfg, {}))
        batch.pop("loss_items")
        loss = task.compute_loss(model, batch, cfg, {})
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 0
    assert any("lora_A" in n for n in grads[0])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5), name


def test_generation_stops_at_the_templates_end_of_turn(tiny_qwen):
    """A base model prompted in gemma's turn template ends its answer with <end_of_turn>, not EOS: it stops there."""
    from transformers import AutoTokenizer

    from tasktune.models.catalog import GEMMA_TEMPLATE
    from tasktune.tasks.sft import PLAIN_TEMPLATE, stop_ids, turn_end_id

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    tok.chat_template = GEMMA_TEMPLATE
    end = tok.convert_tokens_to_ids("<end_of_turn>")
    assert turn_end_id(tok) == end
    assert stop_ids(None, tok) == sorted({tok.eos_token_id, end})
    tok.chat_template = PLAIN_TEMPLATE  # ends each answer with EOS itself
    assert turn_end_id(tok) == tok.eos_token_id
    tok.chat_template = None
    assert turn_end_id(tok) is None and stop_ids(None, tok) == [tok.eos_token_id]


def test_a_trained_answer_ends_with_eos_or_the_templates_end_of_turn(tiny_qwen):
    """task.answer_end: EOS by default; turn_end teaches the template's <end_of_turn> instead (EOS without one)."""
    from transformers import AutoTokenizer

    from tasktune.models.catalog import GEMMA_TEMPLATE
    from tasktune.tasks.sft import PLAIN_TEMPLATE, encode_row

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    tok.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    cfg, turn = _cfg(tiny_qwen), _cfg(tiny_qwen, "task.answer_end=turn_end")
    row = SFT().parse_row(ALPACA, cfg, None)
    end_of_turn = tok.convert_tokens_to_ids("<end_of_turn>")
    for template, settings, end in ((GEMMA_TEMPLATE, cfg, tok.eos_token_id), (GEMMA_TEMPLATE, turn, end_of_turn),
                                    (PLAIN_TEMPLATE, turn, tok.eos_token_id)):
        tok.chat_template = template
        feat = encode_row(tok, row, settings)[0]
        assert feat["input_ids"][-1] == end and feat["labels"][-1] == end
        assert feat["labels"].count(tok.eos_token_id) == (end == tok.eos_token_id)


def test_qlora_sft_trains_packed_on_a_4bit_base_and_exports_a_plain_merged_model(qwen64, tmp_path, capsys):
    """SFT with model.quantization=4bit: adapters train on a frozen 4-bit base (packed rows), generation runs
    on the 4-bit base, and export --merge-lora folds the adapter into the FULL-precision base: the merged
    folder has no quantization and each merged weight is the base weight plus the adapter's scaled B @ A."""
    pytest.importorskip("bitsandbytes")
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    rows = [{"id": r["id"], "instruction": "mood of: " + r["text"], "output": r["label"]} for r in make_rows(16, 2)]
    write_jsonl(tmp_path / "train.jsonl", rows)
    assert main(["train", str(_write_cfg(tmp_path, qwen64)), "model.quantization=4bit", "train.packing=true",
                 "model.lora={r: 4, alpha: 8, target_modules: all-linear}", "train.learning_rate=5e-2",
                 "data.eval=null"]) == 0
    history = json.loads((tmp_path / "run/metrics_history.json").read_text())
    assert next(h["train_loss"] for h in history if "train_loss" in h) > 0
    assert main(["predict", str(tmp_path / "run"), "--input", str(tmp_path / "train.jsonl"), "--output",
                 str(tmp_path / "p.jsonl")]) == 0
    assert len((tmp_path / "p.jsonl").read_text().splitlines()) == 16
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "merged"), "--merge-lora"]) == 0
    capsys.readouterr()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    base = AutoModelForCausalLM.from_pretrained(qwen64)
    assert getattr(merged.config, "quantization_config", None) is None
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32
    adapter = load_file(tmp_path / "run/best/adapter_model.safetensors")
    a = next(v for k, v in adapter.items() if "layers.0.self_attn.q_proj.lora_A" in k)
    b = next(v for k, v in adapter.items() if "layers.0.self_attn.q_proj.lora_B" in k)
    assert b.abs().max() > 0  # the adapter trained: the check below is not base == base
    expected = base.model.layers[0].self_attn.q_proj.weight + (8 / 4) * b.float() @ a.float()
    torch.testing.assert_close(merged.model.layers[0].self_attn.q_proj.weight, expected, atol=1e-5, rtol=1e-4)
