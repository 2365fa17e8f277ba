"""Retrieval: pooling, losses by hand, mining rules, ranking metrics, the index, sentence-transformers
export, the two-stage pipeline through the CLI, and its user errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_jsonl

from tasktune.cli import main
from tasktune.config import load_config


def _cfg(corpus, model="m", *extra):
    return load_config(None, ["task=retrieval", f"task.corpus={corpus}", f"model.name={model}", *extra])


def test_pooling_and_normalisation():
    from tasktune.models.heads import pooled

    hidden = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [9.0, 9.0]], [[2.0, 2.0], [0.0, 4.0], [5.0, 5.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # right padding: row 0 has 2 real tokens
    assert torch.allclose(pooled(hidden, mask, "mean"), torch.tensor([[2.0, 1.0], [7 / 3, 11 / 3]]))
    assert pooled(hidden, mask, "cls").tolist() == [[1.0, 0.0], [2.0, 2.0]]
    assert pooled(hidden, mask, "last").tolist() == [[3.0, 2.0], [5.0, 5.0]]


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_grouped_passage_forwards_give_the_one_forward_embeddings_and_gradients(tiny_gemma, pooling):
    from transformers import AutoModel

    from tasktune.retrieval.encoder import embeddings, embeddings_grouped

    model = AutoModel.from_pretrained(tiny_gemma, attn_implementation="eager")
    lengths = [12, 3, 7, 12, 1, 9, 5]  # right padding to 12; grouped by 3 after sorting: 1 3 5 | 7 9 12 | 12
    ids = torch.randint(3, 50, (len(lengths), 12))
    mask = (torch.arange(12) < torch.tensor(lengths)[:, None]).long()
    ids = ids * mask
    target = torch.randn(len(lengths), 32)

    def run(fn, *extra):
        model.zero_grad()
        vec = fn(model, ids, mask, pooling, None, *extra)
        (vec * target).sum().backward()
        return vec.detach(), model.embed_tokens.weight.grad.clone()

    one, one_grad = run(embeddings)
    grouped, grouped_grad = run(embeddings_grouped, 3)
    assert torch.allclose(grouped, one, atol=1e-5)           # the same rows, in the batch's order
    assert torch.allclose(grouped_grad, one_grad, atol=1e-5)
    assert not torch.allclose(grouped[0], grouped[3])        # two 12-token rows of different ids stay apart


class _Fixed(torch.nn.Module):
    """A stand-in backbone whose hidden state is a fixed vector per token id."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, input_ids, attention_mask):
        from types import SimpleNamespace

        return SimpleNamespace(last_hidden_state=self.table[input_ids])


def test_losses_against_hand_computation(retrieval_files):
    from tasktune.tasks.retrieval import PairCollator, Retrieval

    corpus, _, _ = retrieval_files
    # Two queries, each with its positive and one hard negative; cls pooling reads token 0 only.
    feats = [{"query_ids": [1], "passage_ids": [[2], [3]], "passage_index": [0, 5], "positive_index": [0]},
             {"query_ids": [4], "passage_ids": [[5], [6]], "passage_index": [1, 0], "positive_index": [1, 0]}]
    batch = PairCollator(0)(feats)
    vec = torch.tensor([[1.0, 0.0], [0.0, 1.0],                                   # queries (token ids 1, 4)
                        [1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])          # p0, n5 | p1, p0 (q1's positive too)
    table = torch.zeros(7, 2)
    table[[1, 4, 2, 3, 5, 6]] = vec
    model = _Fixed(table)
    assert batch["input_ids"].shape == (2, 1) and batch["passage_input_ids"].shape == (4, 1)
    # Queries are padded to the longest query, not to the passages' length (two forwards).
    short = PairCollator(0)([{"query_ids": [1], "passage_ids": [[2, 3, 4]], "passage_index": [0], "positive_index": [0]}])
    assert short["input_ids"].shape == (1, 1) and short["passage_attention_mask"].tolist() == [[1, 1, 1]]
    state = {"standardizer": None}
    sim = vec[:2] @ vec[2:].T
    # infonce: a passage that is one of the query's known positives is never its negative: q0's positive
    # corpus 0 appears again as q1's hard negative (passage 3); q1's positives are corpus 1 and 0.
    cfg = _cfg(corpus, "m", "task.pooling=cls", "task.temperature=0.5")
    logits = sim / 0.5
    logits[0, 3] = logits[1, 0] = logits[1, 3] = float("-inf")
    expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 2]), reduction="sum")
    got = Retrieval().compute_loss(model, batch, cfg, state)
    assert got.item() == pytest.approx(expected.item(), abs=1e-6)
    # margin on each query's own hard negatives: q0 vs n5 (cosine 0.6); q1's hard negative is corpus 0, one of
    # its own positives, so it falls back on its in-batch non-positives: only n5 (cosine 0.8).
    cfg = _cfg(corpus, "m", "task.pooling=cls", "task.loss=margin", "task.margin=0.5")
    q0 = max(0.0, 0.5 - (1.0 - 0.6))
    q1 = max(0.0, 0.5 - (1.0 - 0.8))  # its only usable negative is n5 (the others are its positives)
    got = Retrieval().compute_loss(model, batch, cfg, state)
    assert got.item() == pytest.approx(q0 + q1, abs=1e-6)


def test_mining_never_returns_a_positive_or_a_near_copy():
    import numpy as np

    from tasktune.retrieval.corpus import Corpus
    from tasktune.retrieval.mining import mine

    corpus = Corpus("c", ("a", "b", "c", "d", "e"), ("x",) * 5, "s")
    vectors = np.array([[1, 0], [0.999, 0.0447], [0, 1], [0.6, 0.8], [0.8, 0.6]], dtype=np.float32)
    queries = [{"id": "q", "query": "?", "positive_ids": ["a"]}, {"id": "easy", "query": "?", "positive_ids": ["c"]}]
    rankings = [[("b", 0.9), ("e", 0.8), ("a", 0.7), ("d", 0.6), ("c", 0.1)],    # gold at rank 3: hard at top-2
                [("c", 0.9), ("d", 0.5), ("a", 0.4), ("b", 0.3), ("e", 0.2)]]
    mined = mine(rankings, queries, vectors, corpus, hard_if_gold_not_in=2, negatives=2, max_similarity=0.95)
    assert len(mined) == 1 and mined[0]["query_id"] == "q" and mined[0]["gold_rank"] == 3
    assert mined[0]["negative_ids"] == ["e", "d"]  # b is a near-copy of a (cos 0.999), a is the positive
    both = mine(rankings, queries, vectors, corpus, hard_if_gold_not_in=2, negatives=2, keep_easy=True)
    assert [m["hard"] for m in both] == [True, False] and "c" not in both[1]["negative_ids"]


def test_ranking_metrics_by_hand():
    from tasktune.metrics.ranking import query_scores, ranking_metrics

    a = query_scores(["d3", "d1", "d7"], {"d1"})
    assert a["rank"] == 2 and (a["top1"], a["top3"]) == (0.0, 1.0) and a["mrr@10"] == 0.5
    assert a["ndcg@10"] == pytest.approx(1 / 1.5849625, abs=1e-6)  # 1/log2(3) over the ideal 1
    b = query_scores(["d1", "d2"], {"d1", "d2", "d9"})
    assert b["recall@10"] == pytest.approx(2 / 3) and b["mrr@10"] == 1.0
    c = query_scores(["d5"], {"d1"})
    assert c["rank"] is None and c["top10"] == 0.0
    assert ranking_metrics([a, b, c])["top1"] == pytest.approx(1 / 3)


def test_weighted_reciprocal_rank_fusion_by_hand():
    """task.fusion_weight: the dense ranking's weight; equal weights reproduce plain RRF."""
    from tasktune.tasks.retrieval import _rrf

    dense, lexical = [("a", 0.9), ("b", 0.8), ("c", 0.1)], [("b", 3.0), ("a", 1.0)]
    fused = dict(_rrf(dense, lexical, k=1, weights=(0.25, 0.75)))
    assert fused["b"] == pytest.approx(0.25 / 3 + 0.75 / 2) and fused["a"] == pytest.approx(0.25 / 2 + 0.75 / 3)
    assert fused["c"] == pytest.approx(0.25 / 4)
    assert [d for d, _ in _rrf(dense, lexical, k=1, weights=(0.25, 0.75))] == ["b", "a", "c"]
    assert [d for d, _ in _rrf(dense, lexical, k=1, weights=(0.9, 0.1))][0] == "a"  # dense outvotes BM25
    assert _rrf(dense, lexical, k=60) == _rrf(dense, lexical, k=60, weights=(1.0, 1.0))


def test_score_fusion_by_hand():
    """task.fusion=scores: min-max scaled scores, weighted; a far-ahead BM25 hit survives a weak dense vote."""
    from tasktune.tasks.retrieval import _score_fusion

    dense, lexical = [("a", 0.9), ("b", 0.8), ("c", 0.5)], [("b", 10.0), ("c", 2.0), ("a", 1.0)]
    fused = dict(_score_fusion(dense, lexical, weights=(0.3, 0.7)))
    assert fused["a"] == pytest.approx(0.3 * 1.0 + 0.7 * 0.0)
    assert fused["b"] == pytest.approx(0.3 * 0.75 + 0.7 * 1.0)
    assert fused["c"] == pytest.approx(0.3 * 0.0 + 0.7 * 1 / 9)
    assert [d for d, _ in _score_fusion(dense, lexical, weights=(0.3, 0.7))] == ["b", "a", "c"]
    assert dict(_score_fusion([("x", 0.4)], [], weights=(0.5, 0.5))) == {"x": 0.0}  # one hit: nothing to scale


def test_mining_ranks_deep_enough_for_its_hard_rule(ret_bert, retrieval_files, tmp_path, capsys):
    """hard_if_gold_not_in 100 on 40 passages: every gold is in the top 100, so no query is hard (the ranking
    must not stop at 21 and call a gold ranked 30th 'not found')."""
    corpus, train, _ = retrieval_files
    cfg = tmp_path / "ret.yaml"
    cfg.write_text(f"task: {{name: retrieval, corpus: {corpus}, mine: {{hard_if_gold_not_in: 100, negatives: 1}}}}\n"
                   f"model: {{name: {ret_bert}, max_length: 32}}\ndata: {{train: {train}, eval: null}}\n",
                   encoding="utf-8")
    assert main(["train", str(cfg), f"output_dir={tmp_path / 'run'}"]) == 2
    assert "no training query is hard" in capsys.readouterr().err
    stage1 = json.loads((tmp_path / "run/stage1/evaluation_results.json").read_text())
    assert all(len(q["ranked"]) == 40 for q in stage1["train"]["queries"])  # the whole corpus, not the top 21


def test_retrieval_run_through_the_cli(ret_bert, retrieval_files, tmp_path, capsys):
    """Two-stage training writes every artifact; best/ is a sentence-transformers folder; the index round-trips."""
    from sentence_transformers import SentenceTransformer

    corpus, train, eval_ = retrieval_files
    run = tmp_path / "run"
    cfg = tmp_path / "ret.yaml"
    cfg.write_text(f"task: {{name: retrieval, corpus: {corpus}, standardize: true,\n"
                   "  mine: {hard_if_gold_not_in: 1, negatives: 2, train_on: all}}\n"
                   f"model: {{name: {ret_bert}, max_length: 32}}\ndata: {{train: {train}, eval: {eval_}}}\n"
                   "train: {epochs: 10, batch_size: 8, learning_rate: 1.0e-3, best_metric: eval_mrr@10}\n"
                   "baseline: {after_training: true}\n", encoding="utf-8")
    assert main(["train", str(cfg), f"output_dir={run}"]) == 0
    out = json.loads(capsys.readouterr().out)
    # 40 passages: a random ranking scores MRR@10 ~0.07; the tuned model learnt the lexical match.
    assert out["tuned"]["mrr@10"] > 0.8 and set(out) == {"tuned", "bm25", "base_model"}
    for name in ("stage1/evaluation_results.json", "hard_negatives.jsonl", "comparison.json",
                 "best/modules.json", "eval/eval/predictions.jsonl", "eval/eval/baselines/bm25.jsonl"):
        assert (run / name).is_file(), name
    stage1 = json.loads((run / "stage1/evaluation_results.json").read_text())
    assert len(stage1["train"]["queries"]) == 32 and "gold_rank" in stage1["train"]["queries"][0]
    comparison = json.loads((run / "comparison.json").read_text())
    assert set(comparison["metrics"]["mrr@10"]) == {"before", "after"} and len(comparison["queries"]) == 8
    for line in (run / "hard_negatives.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert not set(record["negative_ids"]) & set(record["positive_ids"])

    # SentenceTransformer(best/) embeds as tasktune does (pooling, standardisation, normalisation).
    from tasktune.retrieval.encoder import embed
    from tasktune.run import load_run

    task, rcfg, state, best = load_run(run)
    model, tok = task.build_model(str(best), rcfg, state, for_training=False)
    texts = ["where does the fox live", "the owl mostly eats mice in summer"]
    ours = embed(model, tok, texts, rcfg.task.pooling, state["standardizer"], 32)
    theirs = SentenceTransformer(str(best), device="cpu").encode(texts, convert_to_numpy=True)
    assert ours.shape == theirs.shape and abs(ours - theirs).max() < 1e-4

    # index build -> search: the same ids and scores as the run's own ranking of the passages.
    assert main(["index", "build", "--model", str(run), "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    assert main(["index", "search", str(tmp_path / "idx"), "--query", texts[0], "--k", "3"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and hits[0]["text"] and hits[0]["score"] >= hits[1]["score"]
    direct = embed(model, tok, [t["text"] for t in map(json.loads, corpus.read_text().splitlines())],
                   rcfg.task.pooling, state["standardizer"], 32) @ ours[0]
    assert hits[0]["score"] == pytest.approx(float(direct.max()), abs=1e-4)

    # The same run with BM25 fused in (reciprocal rank fusion), evaluated beside its own eval, not over it.
    own = (run / "eval/eval/metrics.json").read_text()
    assert main(["eval", str(run), "--set", "task.fusion=rrf"]) == 0
    fused = [json.loads(x) for x in (run / "eval/eval-task.fusion=rrf/predictions.jsonl").read_text().splitlines()]
    assert len(fused) == 8 and fused[0]["scores"][0] <= 2 / 61 + 1e-9  # RRF scores: at most 1/(60+1) per ranking
    assert (run / "eval/eval/metrics.json").read_text() == own
    # Score fusion through the same path: scaled scores weighted 0.3 / 0.7 add up to at most 1.
    assert main(["eval", str(run), "--set", "task.fusion=scores", "--set", "task.fusion_weight=0.3"]) == 0
    scored = [json.loads(x) for x in
              (run / "eval/eval-task.fusion=scores-task.fusion_weight=0.3/predictions.jsonl").read_text().splitlines()]
    assert len(scored) == 8 and all(0 <= p["scores"][0] <= 1 + 1e-9 for p in scored)
    # Combining the starting and trained models needs an adapter: this run trained full weights.
    assert main(["eval", str(run), "--set", "task.combine=scores"]) == 2
    assert "task.combine=scores needs model.lora" in capsys.readouterr().err


@pytest.mark.parametrize("rows, corpus_rows, message", [
    ([{"query": "where", "positive_ids": ["nope"]}], None, r"train.jsonl line 1: positive_ids 'nope' is not in the corpus"),
    ([{"query": " ", "positive_ids": ["p0"]}], None, r"train.jsonl line 1: empty or missing query"),
    (None, [{"id": "p0", "text": "a"}, {"id": "p0", "text": "b"}], r"corpus.jsonl line 2: duplicate corpus id 'p0'"),
    (None, [{"id": "p0", "text": ""}], r"corpus.jsonl line 1: empty corpus text"),
])
def test_bad_retrieval_data_exits_2_naming_the_line(ret_bert, retrieval_files, capsys, rows, corpus_rows, message):
    corpus, train, _ = retrieval_files
    if rows:
        write_jsonl(train, rows)
    if corpus_rows:
        write_jsonl(corpus, corpus_rows)
    cfg = corpus.parent / "c.yaml"
    cfg.write_text("{}\n")
    assert main(["data", "validate", str(cfg), "task=retrieval", f"task.corpus={corpus}", f"model.name={ret_bert}",
                 f"data.train={train}", "data.eval=null"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and __import__("re").search(message, err), err


def test_qa_file_becomes_a_chunked_retrieval_set(tmp_path, capsys):
    from tasktune.data.qa_retrieval import chunks

    text = "第一句很短。第二句稍微长一点点。第三句！Fourth one. Fifth."
    spans = chunks(text, 12)
    assert all(e - s <= 12 for s, e in spans) and spans[0] == (0, 6)          # cut after 。
    assert "".join(text[s:e] for s, e in spans) == text                      # no gaps, no overlap by default
    overlapped = chunks(text, 16, overlap=12)
    assert any(b[0] < a[1] for a, b in zip(overlapped, overlapped[1:]))      # consecutive chunks share a sentence
    context = "北京是中国的首都。上海是最大的城市。广州在南方。"
    rows = [{"id": "a", "question": "首都是哪里？", "context": context, "answers": [{"text": "北京", "start": 0}]},
            {"id": "b", "question": "南方城市？", "context": context, "answers": [{"text": "广州", "start": 18}]},
            {"id": "c", "question": "没有？", "context": context, "answers": []}]
    write_jsonl(tmp_path / "qa.jsonl", rows)
    assert main(["data", "convert", "--from", "qa-retrieval", str(tmp_path / "qa.jsonl"), str(tmp_path / "out"),
                 "--chunk-chars", "10"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"contexts": 1, "passages": 3, "queries": 2, "left_out_no_answer": 1, "chunk_chars": 10,
                      "overlap": 0}
    corpus = {r["id"]: r["text"] for r in map(json.loads, (tmp_path / "out/corpus.jsonl").read_text().splitlines())}
    queries = [json.loads(x) for x in (tmp_path / "out/queries.jsonl").read_text().splitlines()]
    for q, answer in zip(queries, ("北京", "广州")):
        assert all(answer in corpus[p] for p in q["positive_ids"]) and q["group"] == "c0"
    assert main(["data", "convert", "--from", "qa-retrieval", str(tmp_path / "qa.jsonl"), str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_index_refuses_another_model_and_a_k_beyond_the_corpus(ret_bert, tiny_bert, retrieval_files, tmp_path,
                                                                capsys):
    from tasktune.indexing import index_search

    corpus, _, _ = retrieval_files
    assert main(["index", "build", "--model", ret_bert, "--corpus", str(corpus), "--out", str(tmp_path / "i")]) == 0
    capsys.readouterr()
    assert main(["index", "search", str(tmp_path / "i"), "--query", "where does the fox live", "--k", "41"]) == 2
    assert "k=41 is larger than the corpus (40 passages)" in capsys.readouterr().err
    assert main(["index", "search", str(tmp_path / "i"), "--query", "fox", "--model", tiny_bert]) == 2
    err = capsys.readouterr().err
    assert "was built by" in err and "rebuild it with this model" in err and len(err.strip().splitlines()) == 1
    assert main(["index", "search", str(tmp_path / "nope"), "--query", "fox"]) == 2
    assert "not a tasktune index" in capsys.readouterr().err
    # An index is never replaced silently; hnsw and ivf find what the exact index finds on a small corpus.
    assert main(["index", "build", "--model", ret_bert, "--corpus", str(corpus), "--out", str(tmp_path / "i")]) == 2
    assert "already holds an index; pass --overwrite" in capsys.readouterr().err
    queries = ["where does the fox live", "the owl mostly eats mice in summer"]
    exact = [[h["id"] for h in hits] for hits in index_search(str(tmp_path / "i"), queries, k=3)]
    for kind in ("hnsw", "ivf"):
        assert main(["index", "build", "--model", ret_bert, "--corpus", str(corpus), "--out", str(tmp_path / "i"),
                     "--kind", kind, "--overwrite"]) == 0
        assert json.loads((tmp_path / "i/index.json").read_text())["kind"] == kind
        found = [[h["id"] for h in hits] for hits in index_search(str(tmp_path / "i"), queries, k=3)]
        assert [f[0] for f in found] == [e[0] for e in exact], kind


def test_combining_the_starting_and_trained_models(ret_bert, retrieval_files):
    """task.combine: scores is w*cos(trained) + (1-w)*cos(start); weights is the weight average; the ends of w
    are the two models; a model without an adapter is refused with a user error."""
    import numpy as np
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    from tasktune.errors import UserError
    from tasktune.tasks.retrieval import embed_texts

    corpus, _, _ = retrieval_files
    tok = AutoTokenizer.from_pretrained(ret_bert)
    torch.manual_seed(0)
    model = get_peft_model(AutoModel.from_pretrained(ret_bert),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False))
    model.eval()
    texts = ["where does the fox live", "the owl mostly eats mice in summer", "rivers run to the sea"]

    def emb(combine="none", w=0.5):
        return embed_texts(model, tok, texts, _cfg(corpus, ret_bert, "model.lora.r=4", f"task.combine={combine}",
                                                   f"task.combine_weight={w}"), None)

    trained = emb()
    with model.disable_adapter():
        start = emb()
    assert abs(trained - start).max() > 1e-3                       # the adapter changes the embeddings
    fused = emb("scores", 0.3)
    assert np.allclose(fused @ fused[0], 0.3 * trained @ trained[0] + 0.7 * start @ start[0], atol=1e-5)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1, atol=1e-5)
    assert np.allclose(emb("weights", 1.0), trained, atol=1e-5) and np.allclose(emb("weights", 0.0), start, atol=1e-5)
    half = emb("weights", 0.5)
    assert abs(half - trained).max() > 1e-4 and abs(half - start).max() > 1e-4
    merged = AutoModel.from_pretrained(ret_bert)                   # the weight average built by hand
    lora = model.base_model.model
    with torch.no_grad():
        for name, module in lora.named_modules():
            if hasattr(module, "lora_A") and "default" in module.lora_A:
                delta = (module.lora_B["default"].weight @ module.lora_A["default"].weight) * module.scaling["default"]
                merged.get_submodule(name).weight += 0.5 * delta
    from tasktune.retrieval.encoder import embed

    assert np.allclose(embed(merged.eval(), tok, texts, "mean", None, 32), half, atol=1e-5)
    # The combination setting is refused without LoRA, and for a model that has no adapter.
    with pytest.raises(Exception, match="task.combine=scores needs model.lora"):
        _cfg(corpus, ret_bert, "task.combine=scores")
    with pytest.raises(UserError, match="needs a LoRA model"):
        embed_texts(AutoModel.from_pretrained(ret_bert), tok, texts,
                    _cfg(corpus, ret_bert, "model.lora.r=4", "task.combine=weights"), None)


def test_sentence_transformers_export_of_a_chat_decoder_embeds_as_tasktune(tiny_gemma, retrieval_files, tmp_path):
    """A decoder whose tokenizer has a chat template, encoding with bidirectional attention: the exported folder
    gives tasktune's embeddings (sentence-transformers neither wraps texts in the template nor turns causal)."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from tasktune.retrieval.encoder import embed
    from tasktune.tasks.retrieval import Retrieval

    corpus, _, _ = retrieval_files
    tok = AutoTokenizer.from_pretrained(tiny_gemma)
    tok.chat_template = "{% for m in messages %}<turn>{{ m['content'] }}</turn>{% endfor %}"
    base = tmp_path / "base"
    tok.save_pretrained(base)
    __import__("shutil").copytree(tiny_gemma, base, dirs_exist_ok=True, ignore=lambda d, names: [
        n for n in names if "token" in n or n == "chat_template.jinja"])
    cfg = _cfg(corpus, str(base), "model.attention=bidirectional", "task.pooling=mean", "model.max_length=32")
    task = Retrieval()
    model, tok = task.build_model(str(base), cfg, {}, for_training=False)
    assert tok.chat_template
    out = tmp_path / "best"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    task.save_artifacts(model, tok, cfg, {}, out)
    texts = ["where does the fox live", "the owl mostly eats mice in summer and more"]
    ours = embed(model, tok, texts, "mean", None, 32)
    theirs = SentenceTransformer(str(out), device="cpu").encode(texts, convert_to_numpy=True)
    assert abs(ours - theirs).max() < 1e-4
    causal = embed(task.build_model(str(base), _cfg(corpus, str(base), "task.pooling=mean"), {}, False)[0], tok,
                   texts, "mean", None, 32)
    assert abs(causal - ours).max() > 1e-3  # the attention setting matters, so the match above is meaningful
