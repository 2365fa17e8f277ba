"""bf16 only where it is fast: the decision, where it applies, and what the run folder records."""

from __future__ import annotations

import json
import logging

import pytest

from conftest import base_config


def test_auto_follows_the_cpu_probe(cpu_bf16):
    from tasktune.precision import decide_bf16

    cpu_bf16(0.01)   # AVX2 only: bf16 emulated, ~100x slower
    slow = decide_bf16("auto")
    assert (slow.bf16, slow.device, slow.speedup) == (False, "cpu", 0.01)
    assert "no bf16 units" in slow.reason
    cpu_bf16(3.5)    # AMX
    assert decide_bf16("auto").bf16 is True
    cpu_bf16(1.1)    # a small gain does not pay for autocast's casts
    assert decide_bf16("auto").bf16 is False


def test_false_never_probes_and_true_warns_once_where_slow(cpu_bf16, monkeypatch):
    from tasktune import precision

    cpu_bf16(0.01)
    monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: pytest.fail("probed although bf16 is false"))
    assert precision.decide_bf16(False).bf16 is False
    cpu_bf16(0.01)
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # tasktune's logger does not propagate to the root (caplog)
    logging.getLogger("tasktune").addHandler(handler)
    try:
        assert precision.decide_bf16(True).bf16 is True
        assert precision.decide_bf16(True).bf16 is True
    finally:
        logging.getLogger("tasktune").removeHandler(handler)
    warnings = [r.getMessage() for r in records]
    assert len(warnings) == 1 and "0.01x the speed of fp32" in warnings[0] and "train.bf16=auto" in warnings[0]


def test_half_precision_checkpoints_load_in_fp32_where_bf16_is_slow(cpu_bf16):
    import torch

    from tasktune.models.loading import torch_dtype

    cpu_bf16(0.01)
    assert torch_dtype("auto") == torch.float32
    assert torch_dtype("bfloat16") == torch.bfloat16   # asked for by name: given
    cpu_bf16(3.5)
    assert torch_dtype("auto") == "auto"                # the checkpoint's own dtype


def test_qlora_compute_dtype_follows_the_decision(cpu_bf16):
    import torch

    from tasktune.models.peft_adapters import quantization_kwargs

    pytest.importorskip("bitsandbytes")
    cpu_bf16(0.01)
    assert quantization_kwargs("4bit", "auto")["quantization_config"].bnb_4bit_compute_dtype == torch.float32
    cpu_bf16(3.5)
    assert quantization_kwargs("4bit", "auto")["quantization_config"].bnb_4bit_compute_dtype == torch.bfloat16
    assert quantization_kwargs(None, "auto") == {}


def test_probe_is_fast_and_measures_a_ratio(monkeypatch):
    import time

    from tasktune import precision

    monkeypatch.delenv(precision.PIN_ENV)  # conftest pins the figure for every other test
    precision.cpu_bf16_speedup.cache_clear()
    start = time.perf_counter()
    ratio = precision.cpu_bf16_speedup()
    # "A few tens of milliseconds": even emulated bf16 (AVX2) stops after one slow sample.
    assert time.perf_counter() - start < 2.0
    assert 0 < ratio < 100
    precision.cpu_bf16_speedup.cache_clear()  # later tests see the pinned figure again


def test_environment_pins_the_probe_figure(monkeypatch):
    from tasktune import precision
    from tasktune.errors import UserError

    for figure, bf16 in [("4", True), ("0.02", False)]:
        monkeypatch.setenv(precision.PIN_ENV, figure)
        precision.cpu_bf16_speedup.cache_clear()
        precision.decide_bf16.cache_clear()
        decided = precision.decide_bf16("auto")
        assert (decided.bf16, decided.speedup) == (bf16, float(figure))
        assert "pinned by TASKTUNE_CPU_BF16_SPEEDUP" in decided.reason
    monkeypatch.setenv(precision.PIN_ENV, "fast")
    precision.cpu_bf16_speedup.cache_clear()
    with pytest.raises(UserError, match="TASKTUNE_CPU_BF16_SPEEDUP='fast' is not a number"):
        precision.cpu_bf16_speedup()
    monkeypatch.undo()
    precision.cpu_bf16_speedup.cache_clear()
    precision.decide_bf16.cache_clear()


@pytest.mark.parametrize("speedup,expect", [(0.01, False), (3.5, True)])
def test_training_uses_and_records_the_decision(tiny_bert, sentiment_files, tmp_path, cpu_bf16, speedup, expect):
    from tasktune.config import load_config
    from tasktune.engine.trainer import training_arguments

    cpu_bf16(speedup)
    cfg = load_config(None, base_config(tiny_bert, *sentiment_files, tmp_path / "run"))
    assert cfg.train.bf16 == "auto"                      # the default
    assert training_arguments(cfg, str(tmp_path / "run"), has_eval=True).bf16 is expect
    if expect:
        return
    from tasktune.run import train

    train(load_config(None, base_config(tiny_bert, *sentiment_files, tmp_path / "run", **{"train.epochs": 1})))
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["precision"]["bf16"] is False and env["precision"]["speedup"] == speedup
    assert env["precision"]["setting"] == "auto"


def test_console_log_follows_stderr_when_a_caller_swaps_it(monkeypatch):
    # A handler bound to the stderr of its creation wrote "--- Logging error ---" once pytest's
    # capture (or a notebook) had closed that stream; lines must reach the stderr of the moment.
    import io
    import sys

    from tasktune.rundir import setup_logging

    setup_logging()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("tasktune").info("line one")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("tasktune").info("line two")
    assert second.getvalue() == "line two\n"


def test_env_names_the_cpu_model_and_its_vector_unit(tmp_path):
    # Speed figures are only comparable on the same kind of CPU: env.json says which one ran.
    import torch

    from tasktune.rundir import cpu_name

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: avx2\n")
    capability = torch.backends.cpu.get_cpu_capability()
    assert cpu_name(str(info)) == f"AMD EPYC 7B13, {capability}"
    assert cpu_name(str(tmp_path / "missing")).endswith(f", {capability}")
