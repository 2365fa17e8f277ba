"""Session fixtures: tiny random models with real tokenizers, built offline and saved to disk.

Every test loads them back through tasktune's real loading code, as a user's model would be.
"""

from __future__ import annotations

import json
import os
import random

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every test takes the fp32 path, whatever this CPU's bf16 units: tiny models' results (and the
# subprocesses the CLI tests start) must not depend on the machine. Tests of the bf16 path ask for
# it through the `cpu_bf16` fixture; the probe's own test unsets this.
os.environ["TASKTUNE_CPU_BF16_SPEEDUP"] = "0.01"
# Tokenised features are cached per test session, never in the user's cache (tests stay hermetic).
os.environ["TASKTUNE_FEATURE_CACHE"] = __import__("tempfile").mkdtemp(prefix="tasktune-features-")

POS_WORDS = ["good", "great", "lovely", "clean", "好", "棒", "干净"]
NEG_WORDS = ["bad", "awful", "dirty", "noisy", "差", "脏", "吵"]
FILLER = ["the", "room", "was", "hotel", "staff", "and", "very", "房间", "服务", "酒店", "我们", "这个"]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """Keyword sentiment rows a tiny model learns in a few steps: {id, text, label}."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 3 else "negative"  # 2:1 imbalance, like real review sets
        words = rng.sample(FILLER, 4) + rng.sample(POS_WORDS if label == "positive" else NEG_WORDS, 2)
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "text": " ".join(words), "label": label})
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _corpus() -> list[str]:
    return [r["text"] for r in make_rows(300, seed=1)] + ["hello world 你好 世界 unknown words"] * 3


def _wordpiece_tokenizer(corpus=None):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizer

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(corpus or _corpus(), trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
    return BertTokenizer(vocab=tok.get_vocab(), do_lower_case=True)


def _bpe_tokenizer(corpus=None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus or _corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def _save_bert(folder, tok, positions: int) -> str:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=positions)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def _save_qwen(folder, tok, positions: int, hidden: int = 32) -> str:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=positions,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, tie_word_embeddings=True)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    """A 2-layer BERT (hidden 32) with a WordPiece tokenizer, saved as a transformers folder."""
    return _save_bert(tmp_path_factory.mktemp("tiny-bert"), _wordpiece_tokenizer(), 128)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    """A 2-layer Qwen2-style decoder (hidden 32) with a byte-level BPE tokenizer and no pad token."""
    return _save_qwen(tmp_path_factory.mktemp("tiny-qwen"), _bpe_tokenizer(), 128)


@pytest.fixture(scope="session")
def qwen64(tmp_path_factory):
    """tiny_qwen at hidden 64: bitsandbytes quantizes in blocks of 64, so a 4-bit (QLoRA) base needs dims >= 64."""
    return _save_qwen(tmp_path_factory.mktemp("qwen64"), _bpe_tokenizer(), 128, hidden=64)


@pytest.fixture(scope="session")
def qa_bert(tmp_path_factory):
    """A 2-layer BERT encoder (hidden 32, 256 positions) whose WordPiece vocabulary knows the QA test texts."""
    from qa_data import corpus

    return _save_bert(tmp_path_factory.mktemp("qa-bert"), _wordpiece_tokenizer(corpus()), 256)


@pytest.fixture(scope="session")
def qa_qwen(tmp_path_factory):
    """A 2-layer Qwen2-style decoder (hidden 32) with a byte-level BPE tokenizer of the QA test texts."""
    from qa_data import corpus

    return _save_qwen(tmp_path_factory.mktemp("qa-qwen"), _bpe_tokenizer(corpus()), 256)


@pytest.fixture()
def sentiment_files(tmp_path):
    """train.jsonl (120 rows) and eval.jsonl (30 rows) of keyword sentiment."""
    return (write_jsonl(tmp_path / "train.jsonl", make_rows(120, seed=2)),
            write_jsonl(tmp_path / "eval.jsonl", make_rows(30, seed=3)))


def base_config(model: str, train, eval_, out, **train_overrides) -> list[str]:
    """Dotted overrides for a small, fast classification run."""
    items = {"task": "classification", "model.name": model, "model.max_length": 32, "data.train": str(train),
             "data.eval": str(eval_), "output_dir": str(out), "train.epochs": 2, "train.batch_size": 8,
             "train.learning_rate": 5e-3, "train.logging_steps": 2, "train.seed": 7, **train_overrides}
    return [f"{k}={v}" for k, v in items.items()]


@pytest.fixture()
def cpu_bf16(monkeypatch):
    """Call with a figure to make this CPU's bf16 matmul look that many times as fast as fp32
    (0.01: AVX2 only; 3.5: AMX). The cached precision decisions are cleared before and after."""
    from tasktune import precision

    def set_speedup(speedup: float):
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)
        precision.decide_bf16.cache_clear()

    yield set_speedup
    precision.decide_bf16.cache_clear()


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory):
    """A 2-layer Gemma 3 decoder (hidden 32) with a byte-level BPE tokenizer: one sliding-window layer (window 8)
    and one full-attention layer, like gemma-3-270m's mix."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = _bpe_tokenizer()
    folder = tmp_path_factory.mktemp("tiny-gemma")
    torch.manual_seed(0)
    config = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                              sliding_window=8, layer_types=["sliding_attention", "full_attention"],
                              eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.eos_token_id)
    Gemma3ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def ret_bert(tmp_path_factory):
    """A 2-layer BERT (hidden 32) whose WordPiece vocabulary knows the retrieval test texts."""
    from retrieval_data import vocabulary

    return _save_bert(tmp_path_factory.mktemp("ret-bert"), _wordpiece_tokenizer(vocabulary()), 128)


@pytest.fixture()
def retrieval_files(tmp_path):
    """corpus.jsonl (40 passages), train.jsonl (32 questions) and eval.jsonl (8 questions)."""
    from retrieval_data import corpus_and_queries

    corpus, queries = corpus_and_queries()
    return (write_jsonl(tmp_path / "corpus.jsonl", corpus), write_jsonl(tmp_path / "train.jsonl", queries[:32]),
            write_jsonl(tmp_path / "eval.jsonl", queries[32:]))
