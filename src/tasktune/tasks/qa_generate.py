"""Zero-shot extractive QA with a causal LM: prompt it with the context and question, greedy-decode.

The zero-shot baseline of `extractive_qa` when the base model is a decoder (an untrained span head
has nothing to say). The generated answer counts only if it occurs in the context verbatim (an
extractive answer); anything else, or the prompt's "no answer" word, is "no answer".

Example:
    preds = generate_answers("gemma-3-270m folder", rows, language="zh", batch_size=8)
    preds[0]["answer"]    # '北京' or None
"""

from __future__ import annotations

PROMPTS = {
    "zh": "阅读文章，从文章中原样摘出问题的答案；文章里没有答案就回答“无”。\n文章：{context}\n问题：{question}\n答案：",
    "en": "Read the text and copy the answer to the question from it; if the text has no answer, reply "
          "\"none\".\nText: {context}\nQuestion: {question}\nAnswer:",
}
NO_ANSWER_WORDS = {"无", "没有", "none", "no answer", "n/a"}
CONTEXT_TOKENS = 1024  # contexts are cut to this many tokens (the prompt has no windows)


def is_causal_lm(path: str) -> bool:
    """True when the checkpoint at `path` was saved as a causal LM (BERT has an LM class too, but a
    BertModel checkpoint is an encoder)."""
    from transformers import AutoConfig

    architectures = AutoConfig.from_pretrained(path).architectures or []
    return any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _clean(text: str, context: str) -> tuple[str | None, int | None]:
    answer = text.strip().split("\n")[0].strip().strip("。.\"“”").strip()
    if not answer or answer.lower() in NO_ANSWER_WORDS:
        return None, None
    start = context.find(answer)
    return (answer, start) if start != -1 else (None, None)


def generate_answers(path: str, rows: list[dict], language: str, batch_size: int = 8,
                     max_new_tokens: int = 32, bf16: str | bool = "auto") -> list[dict]:
    """One prediction per row: {id, question, answer (None = no answer), start, end, generated}.

    `bf16` is the train.bf16 setting: autocast where `precision.decide_bf16` says."""
    import torch
    from tqdm.auto import tqdm

    from tasktune.models.loading import load_causal_lm, load_tokenizer, to_device
    from tasktune.precision import decide_bf16

    tok = load_tokenizer(path, "left")
    model = to_device(load_causal_lm(path)).eval()  # its head: one row per sequence per generated token
    autocast = decide_bf16(bf16).bf16
    template = PROMPTS["zh" if language == "zh" else "en"]
    prompts = []
    for r in rows:
        ids = tok(r["context"], add_special_tokens=False, return_offsets_mapping=True)
        cut = r["context"] if len(ids["input_ids"]) <= CONTEXT_TOKENS else \
            r["context"][:ids["offset_mapping"][CONTEXT_TOKENS - 1][1]]
        prompts.append(template.format(context=cut, question=r["question"]))
    order = sorted(range(len(rows)), key=lambda i: len(prompts[i]))
    out: list[dict] = [{} for _ in rows]
    for start in tqdm(range(0, len(order), batch_size), desc="zero-shot", unit="batch"):
        chunk = order[start:start + batch_size]
        batch = tok([prompts[i] for i in chunk], return_tensors="pt", padding=True).to(model.device)
        with torch.no_grad(), torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=autocast):
            gen = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        texts = tok.batch_decode(gen[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for i, text in zip(chunk, texts):
            answer, s = _clean(text, rows[i]["context"])
            out[i] = {"id": rows[i].get("id"), "question": rows[i]["question"], "answer": answer, "start": s,
                      "end": None if s is None else s + len(answer), "generated": text}
    return out
