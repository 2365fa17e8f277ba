"""GGUF -> safetensors conversion, checked against the GGUF's own logits; catalog resolution."""

from __future__ import annotations

import json
from pathlib import Path

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
    folder = Path(path)
    assert all(f.stat().st_mode & 0o044 == 0o044 for f in folder.iterdir())  # a shared cache is readable by all
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # a tied head is saved once, as the embedding
        assert converted.config.tie_word_embeddings and "lm_head.weight" not in set(f.keys())


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


CONVERT_SCRIPT = """
import sys, time
from pathlib import Path
sys.path[:0] = [{site!r}, {tests!r}]
import tasktune.models.catalog as catalog
from tasktune.rundir import setup_logging
catalog.CATALOG["tiny-gguf"] = catalog.CatalogEntry(
    packages=("tiny-gguf-pkg==0.1",), module="tiny_gguf_pkg", gguf="assemble()", size="tiny", languages="en",
    licence="MIT")
setup_logging()
if sys.argv[1] == "hold":          # take the lock and hang until killed
    with catalog.conversion_lock("tiny-gguf"):
        print("holding", flush=True)
        time.sleep(600)
print(catalog.catalog_path("tiny-gguf"))
"""

ASSEMBLE = """
import shutil, time
from pathlib import Path

def assemble(dest):
    # Like the real chunked packages: join the parts into `dest` (slowly, to widen the race).
    with open(Path(__file__).parent / "assembled.log", "a") as f:
        f.write("assembled\\n")
    time.sleep(1.0)
    shutil.copy(Path(__file__).parent / "tiny.gguf", dest)
    return dest
"""


@pytest.fixture()
def chunked_package(tmp_path):
    """A package whose assemble() writes the GGUF (as gemma's chunked packages do), and a script using it."""
    import os
    from pathlib import Path

    pkg = tmp_path / "site" / "tiny_gguf_pkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(ASSEMBLE)
    write_tiny_gguf(pkg / "tiny.gguf", _bpe_tokenizer())
    script = tmp_path / "convert.py"
    script.write_text(CONVERT_SCRIPT.format(site=str(tmp_path / "site"), tests=str(Path(__file__).parent)))
    env = {**os.environ, "TASKTUNE_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    return pkg, script, env


def test_two_processes_convert_once_and_both_get_the_model(chunked_package):
    import subprocess
    import sys

    pkg, script, env = chunked_package
    procs = [subprocess.Popen([sys.executable, str(script), "convert"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    paths = {o[0].strip().splitlines()[-1] for o in outs}
    assert len(paths) == 1 and paths.pop().endswith("models/tiny-gguf")
    assert (pkg / "assembled.log").read_text().count("assembled") == 1   # converted once, reused by the other
    assert any("waiting for it to finish" in o[1] for o in outs)
    assert not (Path(env["TASKTUNE_CACHE"]) / "models/tiny-gguf.gguf").exists()  # the joined copy is cleaned up


def test_a_killed_converter_leaves_no_stale_lock(chunked_package):
    import subprocess
    import sys

    pkg, script, env = chunked_package
    holder = subprocess.Popen([sys.executable, str(script), "hold"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "holding"
    finally:
        holder.kill()
        holder.wait()
    done = subprocess.run([sys.executable, str(script), "convert"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1].endswith("models/tiny-gguf")


def test_conversion_parses_the_gguf_once(fake_package, monkeypatch):
    """transformers opens the file for config, weights and tokenizer; one parse serves all three."""
    import gguf

    from tasktune.models.loading import resolve_model

    opened = []
    original = gguf.GGUFReader

    class Counting(original):
        def __init__(self, path, *args, **kwargs):
            opened.append(str(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    resolve_model("tiny-gguf")
    assert len(opened) == 1 and opened[0].endswith("tiny.gguf")
    assert gguf.GGUFReader is Counting  # put back after the conversion
