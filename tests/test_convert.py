"""GGUF -> safetensors conversion, checked against the GGUF's own logits; catalog resolution."""

from __future__ import annotations

import json

import pytest
from conftest import _bpe_tokenizer
from gguf_writer import write_tiny_gguf

from tasktune.errors import UserError

pytest.importorskip("gguf")


@pytest.fixture()
def fake_package(tmp_path, monkeypatch):
    """An importable package `tiny_gguf_pkg` that ships tiny.gguf, registered in the catalog."""
    import tasktune.models.catalog as catalog

    pkg = tmp_path / "site" / "tiny_gguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    write_tiny_gguf(pkg / "tiny.gguf", _bpe_tokenizer())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setenv("TASKTUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(catalog.CATALOG, "tiny-gguf", catalog.CatalogEntry(
        packages=("tiny-gguf-pkg==0.1",), module="tiny_gguf_pkg", gguf="tiny.gguf", size="tiny",
        languages="en", licence="MIT", chat_template="{% for m in messages %}{{ m['content'] }}{% endfor %}"))
    return pkg


def test_conversion_reproduces_gguf_logits_and_writes_manifest(fake_package):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasktune.models.catalog import list_models
    from tasktune.models.loading import resolve_model

    assert {r["name"]: r for r in list_models()}["tiny-gguf"]["converted"] is False
    path = resolve_model("tiny-gguf")
    manifest = json.loads((fake_package.parents[1] / "cache/models/tiny-gguf/tasktune_manifest.json").read_text())
    assert manifest["logits_max_abs_diff"] < 1e-5 and len(manifest["gguf_sha256"]) == 64
    assert manifest["dequantized"] is True and manifest["package"] == "tiny-gguf-pkg"

    gguf_model = AutoModelForCausalLM.from_pretrained(str(fake_package), gguf_file="tiny.gguf")
    converted = AutoModelForCausalLM.from_pretrained(path)
    assert not hasattr(converted.config, "quantization_config")
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok(["the room was clean 干净"], return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 3 and tok.chat_template  # real tokenizer and the named template travel along
    with torch.no_grad():
        assert torch.allclose(gguf_model(ids).logits, converted(ids).logits, atol=1e-5)

    stamp = (fake_package.parents[1] / "cache/models/tiny-gguf/tasktune_manifest.json").stat().st_mtime_ns
    assert resolve_model("tiny-gguf") == path  # converted once, read from the cache after
    assert (fake_package.parents[1] / "cache/models/tiny-gguf/tasktune_manifest.json").stat().st_mtime_ns == stamp
    assert {r["name"]: r for r in list_models()}["tiny-gguf"]["converted"] is True


def test_converted_model_trains_with_lora(fake_package, sentiment_files, tmp_path):
    from conftest import base_config

    from tasktune.config import load_config
    from tasktune.run import train

    train_f, eval_f = sentiment_files
    train(load_config(None, base_config("tiny-gguf", train_f, eval_f, tmp_path / "run", **{
        "model.lora": "{r: 2}", "train.max_steps": 2})))
    meta = json.loads((tmp_path / "run/best/tasktune.json").read_text())
    assert meta["base_model"]["name"] == "tiny-gguf" and meta["base_model"]["path"].endswith("models/tiny-gguf")


def test_unknown_catalog_name_for_pull():
    from tasktune.models.catalog import pull

    with pytest.raises(UserError, match=r"unknown catalog model 'gema-3-270m' \(did you mean 'gemma-3-270m'\?\)"):
        pull("gema-3-270m")
