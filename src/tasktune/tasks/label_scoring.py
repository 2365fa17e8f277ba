"""Label scoring: a causal LM classifies by scoring each label's words after a prompt (no new head).

Plain functions used by the classification task when `model.method: label_scoring`.

How a batch is built (LabelScoringCollator): the prompt `task.prompt` with the row's text, LEFT-padded,
and the model's own `logits_to_keep` computing the LM head only at the positions that predict word
tokens (with gemma's 262k vocabulary the full head would be most of the cost and memory). When every
word is a single token, one sequence per row suffices: all words are scored at the prompt's last
position. Words of several tokens continue the prompt from its KV cache (`shared_prefix_logprobs`):
the prompt is still read once per row, not once per word. Packed batches (train.packing) put one
sequence per (row, word) back to back instead.

A label's score is the sum (or mean, `task.label_score`) of its word's token log-probabilities;
a label with several words takes the log-sum-exp over them. Training minimises cross-entropy over
the label set's scores, so label smoothing applies over the labels, never over the vocabulary.

Example: prompt "评论：{text}\\n情感（正面或负面）：", verbalizer {positive: 正面, negative: 负面}.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasktune.errors import UserError


@dataclass
class Candidates:
    """Every verbalizer word as token ids, right-aligned into a (C, m) table (-100 = no token)."""

    token_ids: list[list[int]]   # per candidate word
    owner: list[int]             # candidate -> label index
    width: int                   # m: the longest word in tokens

    @property
    def single_token(self) -> bool:
        return self.width == 1


def candidates(tokenizer, labels: list[str], verbalizer: dict) -> Candidates:
    """Token ids of each label's words, as they follow the prompt (no special tokens)."""
    ids, owner = [], []
    for k, label in enumerate(labels):
        words = verbalizer[label]
        for word in [words] if isinstance(words, str) else words:
            tokens = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not tokens:
                raise UserError(f"task.verbalizer.{label}: '{word}' has no tokens; use a non-empty word")
            ids.append(tokens)
            owner.append(k)
    return Candidates(ids, owner, max(len(t) for t in ids))


def prompt_ids(tokenizer, template: str, text: str, max_length: int, reserve: int) -> list[int]:
    """Token ids of `template` with `text` in place of {text}; the text (only) is cut to fit
    max_length minus `reserve` tokens, so the instruction after it is never lost."""
    prefix, _, suffix = template.partition("{text}")
    head = tokenizer(prefix, add_special_tokens=True)["input_ids"]
    tail = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    # Some tokenizers append EOS with add_special_tokens: it must not sit inside the prompt.
    if tokenizer.eos_token_id is not None and head and head[-1] == tokenizer.eos_token_id:
        head = head[:-1]
    budget = max_length - len(head) - len(tail) - reserve
    if budget < 1:
        raise UserError(f"task.prompt leaves no room for the text within model.max_length={max_length}; "
                        "shorten the prompt or raise model.max_length")
    body = tokenizer(text, add_special_tokens=False)["input_ids"][:budget]
    return head + body + tail


def candidate_table(cands: Candidates):
    """(C, m) long tensor of the candidates' token ids, right-aligned (-100 = no token), and (C,) owners."""
    import torch

    c, m = len(cands.token_ids), cands.width
    table = torch.full((c, m), -100, dtype=torch.long)
    for i, t in enumerate(cands.token_ids):
        table[i, m - len(t):] = torch.tensor(t)
    return table, torch.tensor(cands.owner, dtype=torch.long)


class LabelScoringCollator:
    """Features {prompt_ids, labels?} -> a batch with `logits_to_keep` at the word positions.

    Unpacked, one-token words: one LEFT-padded sequence per row, every word scored at its last position.
    Unpacked, longer words: each prompt once and every word continuing it (`shared_prefix_batch`; the
    task calls `shared_prefix_logprobs` then `per_label`), not one full sequence per (row, word).
    Packed (`packed=True`, train.packing): every sequence of the batch back to back in ONE row, with
    position ids restarting at each and no attention mask, so transformers builds a block-diagonal
    causal mask (each review sees only itself) and `logits_to_keep` lists each sequence's word
    positions. No padding is computed at all; the attention of the pack costs a little more. The
    batch also carries the candidate table (`cand_ids`, `cand_owner`) that `label_scores` reads, and
    `loss_items` (rows) for the engine's loss normalisation.
    """

    def __init__(self, pad_id: int, cands: Candidates, packed: bool = False):
        self.pad_id, self.cands, self.packed = pad_id, cands, packed
        self.table, self.owner = candidate_table(cands)

    def __call__(self, features: list[dict]) -> dict:
        import torch

        if self.packed:
            words = [[]] if self.cands.single_token else self.cands.token_ids
            return self._packed([f["prompt_ids"] + w for f in features for w in words], features)
        prompts = [f["prompt_ids"] for f in features]
        if self.cands.single_token:
            # Logits at position p predict token p+1: every word is scored at the prompt's last position.
            batch = left_padded(prompts, self.pad_id)
            batch["logits_to_keep"] = torch.arange(batch["input_ids"].shape[1] - 1, batch["input_ids"].shape[1])
        else:  # several-token words: each prompt once, its words continue it
            words = self.cands.token_ids
            batch = shared_prefix_batch(prompts, words * len(features),
                                        [i for i in range(len(features)) for _ in words], self.pad_id)
        batch.update(cand_ids=self.table, cand_owner=self.owner, loss_items=len(features))
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch

    def _packed(self, seqs: list[list[int]], features: list[dict]) -> dict:
        import torch

        ends = torch.tensor([len(s) for s in seqs]).cumsum(0)
        m = self.cands.width
        # The same positions as unpacked, per sequence: its last one (one-token words: the prompt's end), or
        # the m positions that predict its word's tokens.
        keep = ends - 1 if self.cands.single_token else torch.cat([torch.arange(e - m - 1, e - 1) for e in ends.tolist()])
        batch = {"input_ids": torch.tensor([[t for s in seqs for t in s]]),
                 "position_ids": torch.tensor([[p for s in seqs for p in range(len(s))]]),
                 "logits_to_keep": keep, "use_cache": False,  # a KV cache would disable the packed-sequence mask
                 "cand_ids": self.table, "cand_owner": self.owner, "loss_items": len(features)}
        if "labels" in features[0]:
            batch["labels"] = torch.tensor([f["labels"] for f in features])
        return batch


def sequence_logprobs(logits, targets, reduce: str = "sum"):
    """(S,) log-probability of each sequence's target tokens: `logits` (S, m, V) kept at the m positions that
    predict them, `targets` (S, m) right-aligned token ids, -100 where a shorter target has none; `mean`
    divides by each target's length (length-normalised scores for options of different lengths)."""
    logp = logits.float().log_softmax(-1)
    targets = targets.to(logp.device)
    valid = targets >= 0
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    total = (picked * valid).sum(-1)
    return total / valid.sum(-1) if reduce == "mean" else total


def left_padded(seqs: list[list[int]], pad: int) -> dict:
    """{input_ids, attention_mask, position_ids}: `seqs` LEFT-padded, positions counting real tokens only."""
    import torch

    width = max(len(s) for s in seqs)
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    return {"input_ids": torch.tensor([[pad] * (width - len(s)) + s for s in seqs]), "attention_mask": mask,
            "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


def shared_prefix_batch(prompts: list[list[int]], continuations: list[list[int]], owner: list[int], pad: int) -> dict:
    """Tensors for `shared_prefix_logprobs`: the prompts LEFT-padded (B, P) with their mask and position ids,
    the continuations RIGHT-padded (S, m) with their mask, and `prefix_owner` (S,): continuation -> prompt."""
    import torch

    m = max(len(c) for c in continuations)
    return {**left_padded(prompts, pad), "cont_ids": torch.tensor([c + [pad] * (m - len(c)) for c in continuations]),
            "cont_mask": torch.tensor([[1] * len(c) + [0] * (m - len(c)) for c in continuations]),
            "prefix_owner": torch.tensor(owner)}


def shared_prefix_logprobs(model, batch: dict, reduce: str = "sum"):
    """(S,) log-probability of each continuation's tokens after its prompt, every prompt encoded ONCE.

    Why not one sequence per (prompt, continuation), as transformers' multiple-choice examples do: with
    4 options of a few tokens after a 200-token dialogue that computes the dialogue 4 times. Here the
    prompts run once with a KV cache, the cache is copied per continuation (`reorder_cache` with
    repeated rows), and the continuations run on top of it, their positions continuing each prompt's
    own length. Same log-probabilities and gradients as the separate sequences (tested).
    `batch` comes from `shared_prefix_batch`.
    Example: shared_prefix_logprobs(model, shared_prefix_batch([[5, 6]], [[7], [8, 9]], [0, 0], 0), "mean")
    """
    import torch

    owner, mask, cont = batch["prefix_owner"], batch["attention_mask"], batch["cont_ids"]
    m = cont.shape[1]
    if model.training and any(getattr(x, "gradient_checkpointing", False) for x in model.modules()):
        return separate_sequence_logprobs(model, batch, reduce)  # transformers turns the KV cache off then
    out = model(input_ids=batch["input_ids"], attention_mask=mask, position_ids=batch["position_ids"],
                use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.reorder_cache(owner)                      # one copy of its prompt's keys and values per continuation
    rest = model(input_ids=cont, attention_mask=torch.cat([mask[owner], batch["cont_mask"]], 1),
                 position_ids=mask.sum(1)[owner, None] + torch.arange(m, device=cont.device),
                 past_key_values=cache, use_cache=True,
                 logits_to_keep=torch.arange(m - 1, device=cont.device) if m > 1 else 1).logits
    # The prompt's last position predicts token 0; continuation position j predicts token j + 1.
    logits = torch.cat([out.logits[owner, -1:], rest[:, :m - 1]], 1)
    return sequence_logprobs(logits, cont.masked_fill(batch["cont_mask"] == 0, -100), reduce)


def separate_sequence_logprobs(model, batch: dict, reduce: str = "sum"):
    """`shared_prefix_logprobs` computed the plain way: one sequence per (prompt, continuation) from the same
    batch (the prompt repeated; the padding between prompt and continuation masked, positions continuing).
    Used under gradient checkpointing, where transformers runs without a KV cache."""
    import torch

    owner, mask, cont = batch["prefix_owner"], batch["attention_mask"], batch["cont_ids"]
    width, m = mask.shape[1], cont.shape[1]
    logits = model(input_ids=torch.cat([batch["input_ids"][owner], cont], 1),
                   attention_mask=torch.cat([mask[owner], batch["cont_mask"]], 1),
                   position_ids=torch.cat([batch["position_ids"][owner],
                                           mask.sum(1)[owner, None] + torch.arange(m, device=cont.device)], 1),
                   use_cache=False, logits_to_keep=torch.arange(width - 1, width + m - 1, device=cont.device)).logits
    return sequence_logprobs(logits, cont.masked_fill(batch["cont_mask"] == 0, -100), reduce)


def label_scores(logits, cand_ids, cand_owner, n_labels: int, reduce: str = "sum"):
    """(B, K) label scores from the kept logits: (B*C, m, V), or (B, 1, V) for single-token words (a packed
    batch's (1, B*C*m, V) alike).

    `cand_ids` (C, m) and `cand_owner` (C,) come from `candidate_table`.
    """
    import torch

    c, m = cand_ids.shape
    logits = logits.reshape(-1, m, logits.shape[-1])  # a packed batch's (1, S * m, V) -> (S, m, V)
    cand_ids = cand_ids.to(logits.device)
    if m == 1:
        cand = logits.float().log_softmax(-1)[:, 0, cand_ids[:, 0]]                   # (B, C)
    else:
        rows = logits.shape[0] // c
        cand = sequence_logprobs(logits, cand_ids.repeat(rows, 1), reduce).view(rows, c)
    return per_label(cand, cand_owner, n_labels)


def per_label(cand, cand_owner, n_labels: int):
    """(B, K) label scores from (B, C) candidate-word scores: log-sum-exp over each label's words."""
    import torch

    cand_owner = cand_owner.to(cand.device)
    member = torch.nn.functional.one_hot(cand_owner, n_labels).bool()              # (C, K)
    masked = cand.unsqueeze(-1).masked_fill(~member, float("-inf"))                  # (B, C, K)
    return masked.logsumexp(1)


def calibrate(scores, content_free_scores):
    """Contextual calibration: divide each label's probability by its probability on a content-free input."""
    return scores.log_softmax(-1) - content_free_scores.log_softmax(-1)


def scorer_or_head(path: str, cfg, for_training: bool, scoring: bool, **head_kwargs):
    """(model, tokenizer) for a task that scores with the LM (`scoring`: a causal LM, tokenizer LEFT-padded so
    every scored word ends at the same position) or with a new head (AutoModelForSequenceClassification with
    `head_kwargs`, e.g. num_labels; right-padded). LoRA per the config; SEQ_CLS makes peft train and save the
    new head in full beside the adapter.

    Example: model, tok = scorer_or_head(path, cfg, True, scoring=False, num_labels=1)
    """
    from transformers import AutoModelForSequenceClassification

    from tasktune.models.loading import attention_kwargs, load_causal_lm, load_tokenizer, torch_dtype
    from tasktune.models.peft_adapters import load_model

    tok = load_tokenizer(path, "left" if scoring else "right")

    def loader(p, **kwargs):
        if scoring:
            return load_causal_lm(p, cfg.model.dtype, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(
            p, dtype=torch_dtype(cfg.model.dtype), **head_kwargs, **attention_kwargs(p, cfg), **kwargs)
        # Decoders classify from the last non-pad token and must know which id is padding.
        model.config.pad_token_id = tok.pad_token_id
        return model

    return load_model(path, loader, cfg, "CAUSAL_LM" if scoring else "SEQ_CLS", for_training), tok
