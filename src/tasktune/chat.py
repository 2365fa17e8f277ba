"""`tasktune chat MODEL`: talk to an SFT run, an exported folder or a catalog model, tokens streamed as made.

One message per line, from a terminal or piped stdin. `/reset` clears the history, `/system TEXT`
sets a system prompt (and clears the history), `/exit` ends. The whole conversation is the prompt
of each turn, rendered by the model's chat template (tasktune's plain one where it has none).

Example:
    printf 'hello\\n/reset\\nwho are you?\\n' | tasktune chat runs/mug_title
"""

from __future__ import annotations

import sys
from pathlib import Path

from tasktune.errors import UserError


def _load(model: str, max_new_tokens: int, temperature: float | None):
    """(model, tokenizer, cfg) of an SFT run, or of any causal LM folder / catalog name."""
    from tasktune.config import config_from_dict
    from tasktune.models.loading import resolve_model, to_device
    from tasktune.run import load_run
    from tasktune.tasks.sft import SFT

    if (Path(model) / "best" / "tasktune.json").is_file():
        task, cfg, state, best = load_run(model)
        if task.name != "sft":
            raise UserError(f"'{model}' is a {task.name} run; chat needs an sft run, an exported model or a "
                            "catalog name")
        path = str(best)
    else:
        cfg = config_from_dict({"task": {"name": "sft"}, "model": {"name": model}}, "chat")
        path = resolve_model(model)
    sampling = {"max_new_tokens": max_new_tokens}
    if temperature:
        sampling.update(do_sample=True, temperature=temperature)
    cfg = cfg.model_copy(update={"task": cfg.task.model_copy(update=sampling)})
    net, tok = SFT().build_model(path, cfg, {}, for_training=False)
    return to_device(net).eval(), tok, cfg


def chat(model: str, system: str | None = None, max_new_tokens: int = 256, temperature: float | None = None,
         lines=None, out=None) -> list[dict]:
    """Run the conversation; returns its messages. `lines` (default stdin) and `out` (default stdout)."""
    import torch

    from tasktune.tasks.sft import prompt_ids, stop_ids

    net, tok, cfg = _load(model, max_new_tokens, temperature)
    stops = stop_ids(net, tok)
    lines, out = lines or sys.stdin, out or sys.stdout
    terminal = lines is sys.stdin and sys.stdin.isatty()
    head = [{"role": "system", "content": system}] if system else []
    history: list[dict] = []
    t = cfg.task
    while True:
        if terminal:
            print("you> ", end="", file=sys.stderr, flush=True)
        line = lines.readline()
        if line == "" or line.strip() == "/exit":
            break
        text = line.strip()
        if not text:
            continue
        if text == "/reset" or text.startswith("/system"):
            history = []
            if text.startswith("/system"):
                head = [{"role": "system", "content": text[len("/system"):].strip()}]
            print("(history cleared)", file=sys.stderr, flush=True)
            continue
        history.append({"role": "user", "content": text})
        ids = torch.tensor([prompt_ids(tok, head + history)[-(cfg.model.max_length - t.max_new_tokens):]],
                           device=net.device)
        streamer = _streamer(tok, out)
        with torch.no_grad():
            new = net.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=t.max_new_tokens,
                               do_sample=t.do_sample, temperature=t.temperature if t.do_sample else None,
                               top_p=t.top_p if t.do_sample else None, streamer=streamer,
                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                               eos_token_id=stops)
        history.append({"role": "assistant", "content": tok.decode(new[0, ids.shape[1]:], skip_special_tokens=True)
                        .strip()})
    return head + history


def _streamer(tok, out):
    """transformers' TextStreamer, writing each finished piece of text to `out` instead of print's stdout."""
    from transformers import TextStreamer

    class ToFile(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            out.write(text + ("\n" if stream_end else ""))
            out.flush()

    return ToFile(tok, skip_prompt=True, skip_special_tokens=True)
