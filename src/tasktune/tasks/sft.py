"""Instruction tuning (SFT): a causal LM learns to write each row's response to its prompt.

Data contract: one of three row formats, detected per row (or fixed by `task.format`):
- alpaca: required `instruction` and `output`; optional `input` (appended to the instruction after a
  blank line), `system`, `history` ([[user, assistant], ...] earlier turns).
  {"instruction": "为会议片段生成标题。", "input": "会议内容：...", "output": "洗发水品牌推广"}
- sharegpt: `conversations` [{from: human|gpt|system, value}], ending with the assistant (gpt).
- messages: `messages` [{role: user|assistant|system, content}], ending with the assistant.
Every row becomes `messages`; the last assistant turn is the response, the rest the prompt.

Prompts are rendered by the tokenizer's chat template (the catalog gives gemma-3-270m its turn
template); a tokenizer without one gets a plain "User:/Assistant:" template, saved with the run so
predict and exported folders render the same way. The response is followed by the EOS token, which
is what generation stops on. A prompt longer than `model.max_length` minus the response loses
tokens before its last few (its turn markers stay), never the response's start; the count of cut
rows is logged and kept in the state.

Loss: cross-entropy on response tokens only (`task.train_on_prompt` adds the prompt), with LM
logits computed only at those positions (`models/lm_head.logits_at`): gemma's 262k-word head at
every prompt position would cost far more than the backbone. Metrics: ROUGE-1/2/L, BLEU-4 and exact
match on characters (Chinese) or words (`metrics/generation.py`); greedy generation by default.
"""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field

from tasktune.config import TaskSettings
from tasktune.metrics.generation import ID_METRICS, METRICS, id_set_scores, mean_scores, text_scores, units
from tasktune.tasks.protocol import RowError

log = logging.getLogger("tasktune")
# Used where the tokenizer has no chat template (base models without one, test tokenizers).
PLAIN_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% elif m['role'] == 'user' %}User: {{ m['content'] }}\n"
    "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}")
KEEP_TAIL = 8  # prompt tokens kept at the end when a prompt is cut: the turn markers before the response
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
         "system": "system"}


class SFTSettings(TaskSettings):
    name: Literal["sft"] = "sft"
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = Field(
        "auto", description="Row format: detected per row from its columns, or fixed.")
    train_on_prompt: bool = Field(False, description="Also train on the prompt tokens (default: response only).")
    answer_end: Literal["eos", "turn_end"] = Field(
        "eos", description="The token a trained answer ends with: EOS, or the chat template's end of an assistant "
        "turn (<end_of_turn>, <|im_end|>). eos by default: gemma-3-270m, a base model, barely knows <end_of_turn> "
        "and after 25 LoRA steps did not stop with it (ROUGE-L 9.9 vs 19.4 with eos, bench/RESULTS.md); "
        "turn_end suits an instruct model whose template token is trained. Generation stops at either.")
    max_new_tokens: int = Field(64, gt=0, description="Generation: at most this many new tokens per row.")
    do_sample: bool = Field(False, description="Generation: sample instead of greedy decoding.")
    temperature: float = Field(0.7, gt=0, description="Generation with do_sample: softmax temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="Generation with do_sample: nucleus probability mass.")
    metric_units: Literal["auto", "chars", "words"] = Field(
        "auto", description="ROUGE/BLEU units: characters (Chinese), words, or detected from the references.")
    id_metrics: bool = Field(
        False, description="Also score each output as a set of numbers (precision, recall, F1): for responses that "
        "list ids, like `data convert --from mug --task segmentation|action`.")

    def check(self, cfg) -> str | None:
        if cfg.model.attention == "bidirectional":
            return "task sft generates text and needs causal attention: set model.attention=causal"
        return None


def _turns(row: dict, fmt: str) -> list[dict]:
    """The row as [{role, content}, ...]; RowError when it fits no format or does not end with the assistant."""
    if fmt == "auto":
        fmt = "messages" if row.get("messages") else "sharegpt" if row.get("conversations") else "alpaca"
    if fmt == "alpaca":
        if not str(row.get("instruction") or "").strip():
            raise RowError("no instruction (alpaca rows need instruction and output; sharegpt rows conversations; "
                           "messages rows messages)")
        turns = [{"role": "system", "content": row["system"]}] if row.get("system") else []
        for pair in row.get("history") or []:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                raise RowError("history must be a list of [user, assistant] pairs")
            turns += [{"role": "user", "content": str(pair[0])}, {"role": "assistant", "content": str(pair[1])}]
        prompt = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        return turns + [{"role": "user", "content": prompt}, {"role": "assistant", "content": row.get("output")}]
    key, role_key, text_key = ("messages", "role", "content") if fmt == "messages" else ("conversations", "from", "value")
    items = row.get(key)
    if not isinstance(items, list) or not items:
        raise RowError(f"no {key}: a {fmt} row needs a non-empty list of turns")
    turns = []
    for item in items:
        role = ROLES.get(str(item.get(role_key, "")).lower()) if isinstance(item, dict) else None
        if role is None:
            raise RowError(f"a turn without a known {role_key} (use {', '.join(sorted(ROLES))})")
        turns.append({"role": role, "content": item.get(text_key)})
    return turns


class SFT:
    """Instruction tuning of a causal LM on prompt/response rows; generation metrics."""

    name = "sft"
    Settings = SFTSettings
    required_columns: list[str] = []  # three formats: parse_row checks what each needs
    optional_columns = ["id", "instruction", "input", "output", "system", "history", "conversations", "messages",
                        "references"]
    label_columns = ["response"]  # parse_row's field: the last assistant turn of any format
    summary_metrics = ("rouge-1", "rouge-2", "rouge-l", "bleu-4", "exact_match")
    metric_names = METRICS + ID_METRICS
    lower_is_better = ()

    def parse_row(self, row, cfg, state, labelled=True):
        turns = _turns(row, cfg.task.format)
        if labelled:
            if turns[-1]["role"] != "assistant":
                raise RowError("the conversation does not end with the assistant: nothing to learn to answer")
            if not str(turns[-1]["content"] or "").strip():
                raise RowError("empty response (output); fill it in or remove the row")
        elif turns[-1]["role"] == "assistant" and not str(turns[-1]["content"] or "").strip():
            turns = turns[:-1]
        if not any(t["role"] == "user" for t in turns):
            raise RowError("no user turn: a prompt is needed")
        response = turns[-1]["content"] if turns[-1]["role"] == "assistant" else None
        # Other acceptable responses (MUG: one title per annotator) score as extra references.
        extra = [str(x) for x in row.get("references") or [] if str(x).strip() and x != response]
        return {"id": row.get("id"), "messages": turns, "response": response, "references": extra}

    def input_columns(self, state):
        return [], self.optional_columns

    def text_row(self, text, extra):
        return {"id": "text", "messages": [{"role": "user", "content": text}]}

    def split_keys(self, row):
        return None, None

    def inspect(self, rows, tokenizer):
        """Rows per format, turns; with a tokenizer, prompt / response token lengths and a max_length advice."""
        from tasktune.data.inspect import percentiles

        formats: dict = {}
        parsed = []
        for r in rows:
            fmt = "messages" if r.get("messages") else "sharegpt" if r.get("conversations") else "alpaca"
            formats[fmt] = formats.get(fmt, 0) + 1
            try:
                parsed.append(_turns(r, "auto"))
            except RowError:
                continue
        report = {"formats": formats, "unreadable_rows": len(rows) - len(parsed),
                  "turns": percentiles([len(t) for t in parsed]) if parsed else {}}
        if tokenizer is None or not parsed:
            return report
        if not tokenizer.chat_template:
            tokenizer.chat_template = PLAIN_TEMPLATE
        prompts = [len(prompt_ids(tokenizer, t[:-1])) for t in parsed]
        responses = [len(tokenizer(str(t[-1]["content"] or ""), add_special_tokens=False)["input_ids"]) + 1
                     for t in parsed]
        total = sorted(a + b for a, b in zip(prompts, responses))
        p95 = total[min(len(total) - 1, int(len(total) * 0.95))]
        return {**report, "prompt_tokens": percentiles(prompts), "response_tokens": percentiles(responses),
                "advice": f"model.max_length {p95} keeps 95% of the examples whole (prompt + response + EOS); "
                          f"{sum(1 for x in total if x > 512)} of {len(total)} are longer than 512"}

    def setup(self, train_rows, cfg):
        refs = [r["messages"][-1]["content"] for r in train_rows[:500]]
        return {"units": cfg.task.metric_units if cfg.task.metric_units != "auto" else units(refs),
                "id_metrics": cfg.task.id_metrics}

    def state_from_model(self, path, cfg, rows):
        return self.setup([r for r in rows if r.get("response")], cfg)

    def gold(self, row):
        return [row["response"], *row.get("references", [])] if row.get("references") else row["response"]

    # --- model and training -------------------------------------------------------------------
    def head_modules(self, cfg):
        return []

    def build_model(self, path, cfg, state, for_training=True):
        from tasktune.models.loading import load_causal_lm, load_tokenizer
        from tasktune.models.peft_adapters import load_model

        tok = load_tokenizer(path, "left")  # generation continues every row at the same last position
        if not tok.chat_template:
            tok.chat_template = PLAIN_TEMPLATE

        def loader(p, **kwargs):
            return load_causal_lm(p, cfg.model.dtype, **kwargs)

        return load_model(path, loader, cfg, "CAUSAL_LM", for_training), tok

    def before_training(self, model, tokenizer, splits, cfg, run_dir):
        """Count (log, and keep in the state) the training prompts that do not fit model.max_length."""
        from dataclasses import replace

        end = response_end_id(tokenizer, cfg)
        cut = sum(encode_row(tokenizer, r, cfg, end)[1] for r in splits.train)
        if cut:
            log.warning("%d of %d training prompts are longer than model.max_length=%d with their response: cut "
                        "before their last %d tokens (raise model.max_length to keep them whole)", cut,
                        len(splits.train), cfg.model.max_length, KEEP_TAIL)
        return replace(splits, state={**splits.state, "train_prompts_cut": cut})

    def prepare(self, rows, tokenizer, cfg, state):
        end = response_end_id(tokenizer, cfg)
        return [encode_row(tokenizer, r, cfg, end)[0] for r in rows]

    def collator(self, tokenizer, cfg, state):
        return ResponseCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                                packed=cfg.train.packing, row_length=cfg.model.max_length)

    def compute_loss(self, model, batch, cfg, state):
        import torch

        from tasktune.models.lm_head import logits_at, next_token_positions

        rows, cols, targets = next_token_positions(batch["labels"])
        extra = {"position_ids": batch["position_ids"]} if "position_ids" in batch else {}
        logits = logits_at(model, batch["input_ids"], batch.get("attention_mask"), rows, cols, **extra)
        return torch.nn.functional.cross_entropy(logits, targets, reduction="sum")

    # --- inference and metrics ----------------------------------------------------------------
    def predict(self, model, tokenizer, rows, cfg, state, batch_size=8):
        return generate_rows(model, tokenizer, rows, cfg, batch_size)

    def zero_shot(self, path, rows, cfg, state, batch_size=8):
        """The starting model (no LoRA, no training) answering the same prompts."""
        from tasktune.models.loading import to_device

        base_cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"lora": None, "quantization": None})})
        model, tok = self.build_model(path, base_cfg, state, for_training=False)
        return {"base_model": generate_rows(to_device(model), tok, rows, base_cfg, batch_size)}

    def row_scores(self, predictions, state):
        def one(p):
            scores = text_scores(p.get("generation"), p["gold"], state["units"])
            if state.get("id_metrics"):  # ids against the first (the annotated) reference
                first = p["gold"] if isinstance(p["gold"], str) else p["gold"][0]
                scores.update(id_set_scores(p.get("generation"), first))
            return scores

        return [one(p) for p in predictions]

    def aggregate(self, scores, state):
        return mean_scores(scores)

    def metrics(self, predictions, state):
        return {**self.aggregate(self.row_scores(predictions, state), state), "units": state["units"]}


class ResponseCollator:
    """Right-padded input ids, attention mask and labels (-100 outside the trained tokens); `loss_items` is
    the number of trained tokens (the loss is a sum over them).

    Packed (train.packing): the batch's examples go back to back into rows of at most `row_length` tokens
    (model.max_length; `pack_rows`), with position ids restarting at each example and no attention mask, so
    transformers masks attention block-diagonally (no example sees another) and no compute goes to padding
    between examples; each example's first label is -100 (nothing predicts across the seam). A row shorter
    than the longest ends in pad tokens that continue its last example's positions: causal attention keeps
    them out of every real token's view and their labels are -100, so a batch whose rows hold one example
    each needs no mask at all (the causal kernel, which skips the upper triangle). Why rows of model.max_length and not the whole batch in one row: attention under a
    mask costs the square of the row's length, and one 1,024-token row of two 512-token examples trained
    10-20% slower than the two rows (gemma-3-270m + LoRA, 2 CPU cores, bench/pack_rows_speed.py), with
    nothing to gain from packing."""

    def __init__(self, pad_id: int, packed: bool = False, row_length: int | None = None):
        self.pad, self.packed, self.row_length = pad_id, packed, row_length

    def __call__(self, feats: list[dict]) -> dict:
        import torch

        if self.packed:
            return self._packed(feats)
        width = max(len(f["input_ids"]) for f in feats)
        ids = torch.tensor([f["input_ids"] + [self.pad] * (width - len(f["input_ids"])) for f in feats])
        mask = torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in feats])
        labels = torch.tensor([f["labels"] + [-100] * (width - len(f["labels"])) for f in feats])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels,
                "loss_items": int((labels[:, 1:] != -100).sum())}

    def _packed(self, feats: list[dict]) -> dict:
        import torch

        lengths = [len(f["input_ids"]) for f in feats]
        rows = pack_rows(lengths, self.row_length or sum(lengths))
        used = [sum(lengths[i] for i in row) for row in rows]
        width = max(used)
        ids, positions, labels = [], [], []
        for row, n in zip(rows, used):
            pad, last = width - n, lengths[row[-1]]
            ids.append([t for i in row for t in feats[i]["input_ids"]] + [self.pad] * pad)
            positions.append([p for i in row for p in range(lengths[i])] + list(range(last, last + pad)))
            labels.append([t for i in row for t in [-100] + feats[i]["labels"][1:]] + [-100] * pad)
        labels = torch.tensor(labels)
        return {"input_ids": torch.tensor(ids), "position_ids": torch.tensor(positions), "labels": labels,
                "loss_items": int((labels[:, 1:] != -100).sum())}


def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """Indices of sequences of `lengths` grouped into rows of at most `row_length` tokens, first-fit decreasing
    (the longest first, each into the first row with room; one longer than `row_length` gets its own row).

    Example: pack_rows([300, 200, 250, 100], 512) -> [[0, 1], [2, 3]]
    """
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        fit = next((r for r in range(len(rows)) if room[r] >= lengths[i]), None)
        if fit is None:
            rows.append([i])
            room.append(row_length - lengths[i])
        else:
            rows[fit].append(i)
            room[fit] -= lengths[i]
    return rows


def response_end_id(tokenizer, cfg) -> int:
    """The token a trained answer ends with (task.answer_end): EOS, or the chat template's end of an assistant
    turn (gemma's <end_of_turn>, ChatML's <|im_end|>) where the template has one."""
    end = turn_end_id(tokenizer) if cfg.task.answer_end == "turn_end" else None
    return end if end is not None else tokenizer.eos_token_id


def encode_row(tokenizer, row: dict, cfg, end_id: int | None = None) -> tuple[dict, bool]:
    """({input_ids, labels}, whether the prompt was cut): the rendered prompt, then the response and its end
    token (`end_id`, default `response_end_id`: pass it when encoding many rows); labels are -100 on the prompt
    unless task.train_on_prompt. A prompt too long for model.max_length loses the tokens before its last
    KEEP_TAIL (its turn markers); the response is cut only past the limit."""
    prompt = prompt_ids(tokenizer, row["messages"][:-1])
    end = end_id if end_id is not None else response_end_id(tokenizer, cfg)
    response = tokenizer(row["response"], add_special_tokens=False)["input_ids"] + [end]
    response = response[:cfg.model.max_length - 2 * KEEP_TAIL]
    room = cfg.model.max_length - len(response)
    cut = len(prompt) > room
    prompt = cut_prompt(prompt, room)
    labels = (list(prompt) if cfg.task.train_on_prompt else [-100] * len(prompt)) + response
    return {"input_ids": prompt + response, "labels": labels}, cut


def cut_prompt(prompt: list[int], room: int) -> list[int]:
    """`prompt` in at most `room` tokens: its start (the instruction) and its last KEEP_TAIL tokens (the turn
    markers that open the response); the middle goes. Training and generation cut alike, so a model sees at
    generation the prompt shape it was trained on.

    Example: cut_prompt(list(range(20)), 12) -> [0, 1, 2, 3, 12, 13, ..., 19]
    """
    return prompt if len(prompt) <= room else prompt[:max(room - KEEP_TAIL, 0)] + prompt[-KEEP_TAIL:]


def prompt_ids(tokenizer, turns: list[dict]) -> list[int]:
    """Token ids of `turns` rendered by the chat template, ending with the assistant's turn opening."""
    ids = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=True)
    return list(ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids)


def stop_ids(model, tokenizer) -> list[int]:
    """Token ids that end a generation: the tokenizer's EOS (what tasktune trains after each response) and the
    model's own generation_config EOS ids (e.g. a chat model's end-of-turn), so an untrained base is fair too."""
    own = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [tokenizer.eos_token_id, turn_end_id(tokenizer)] + (own if isinstance(own, list) else [own])
    return sorted({i for i in ids if i is not None})


def turn_end_id(tokenizer) -> int | None:
    """The special token the chat template puts right after an assistant message (gemma's <end_of_turn>,
    ChatML's <|im_end|>), or None: a base model prompted in that template ends its answer with it."""
    if not tokenizer.chat_template:
        return None
    mark = tokenizer("MARK", add_special_tokens=False)["input_ids"]
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": "MARK"}],
                                        tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    at = next((i + len(mark) for i in range(len(ids) - len(mark) + 1) if ids[i:i + len(mark)] == mark), None)
    special = set(tokenizer.all_special_ids) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    return ids[at] if at is not None and at < len(ids) and ids[at] in special else None


def generate_rows(model, tokenizer, rows: list[dict], cfg, batch_size: int = 8) -> list[dict]:
    """Each row's generated response: {id, prompt, generation}, in input order (length-sorted, left-padded
    batches with a progress bar)."""
    import torch
    from tqdm.auto import tqdm

    t = cfg.task
    prompts = []
    for r in rows:
        turns = r["messages"][:-1] if r["messages"][-1]["role"] == "assistant" else r["messages"]
        prompts.append(cut_prompt(prompt_ids(tokenizer, turns), cfg.model.max_length - t.max_new_tokens))
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    out: list = [None] * len(rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = stop_ids(model, tokenizer)  # renders the template once, not per batch
    sampling = {"do_sample": True, "temperature": t.temperature, "top_p": t.top_p} if t.do_sample else \
        {"do_sample": False}
    model.eval()
    bar = tqdm(total=len(rows), desc="generate", unit="row", disable=len(rows) < 2 * batch_size)
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk],
                            device=model.device)
        with torch.no_grad():
            new = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=t.max_new_tokens,
                                 pad_token_id=pad, eos_token_id=stops, **sampling)[:, width:]
        for i, seq in zip(chunk, new.tolist()):
            user = next(m["content"] for m in reversed(rows[i]["messages"]) if m["role"] == "user")
            out[i] = {"id": rows[i].get("id"), "prompt": user,
                      "generation": tokenizer.decode(seq, skip_special_tokens=True).strip()}
        bar.update(len(chunk))
    bar.close()
    return out
