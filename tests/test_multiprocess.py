"""Every task family on 2 processes (torchrun, gloo on CPU) trains the weights 1 process trains with the same
global batch, and writes one run folder with one log line per event."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_rows, write_jsonl
from qa_data import make_records, qa_rows
from test_multiple_choice import make_mc_rows
from test_sft import ALPACA, MESSAGES

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
# No dropout (each process would draw its own masks) and a few large steps, so the weights move far.
COMMON = ["data.eval=null", "train.max_steps=3", "train.learning_rate=1e-2", "train.logging_steps=1",
          "train.seed=3", "model.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(tmp_path: Path, name: str, processes: int, args: list[str]) -> tuple[Path, str]:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("{}\n")
    run = tmp_path / name
    per_device = 8 // processes  # the same global batch of 8 either way
    launch = [sys.executable, "-m", "tasktune"] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_addr",
        "127.0.0.1", "--master_port", str(_free_port()), "-m", "tasktune"]
    cmd = [*launch, "train", str(cfg), *COMMON, *args, f"output_dir={run}", f"train.batch_size={per_device}",
           "train.effective_batch_size=8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run, proc.stderr


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    tensors = {}
    for f in sorted((run / "best").glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def _family(name, tmp_path, fixtures) -> list[str]:
    """Model and data overrides for one family, its files written to tmp_path."""
    if name == "classification":
        train = write_jsonl(tmp_path / "train.jsonl", make_rows(48, seed=2))
        return ["task=classification", f"model.name={fixtures['tiny_qwen']}", "model.max_length=32",
                f"data.train={train}", "task.method=label_scoring", "task.prompt='{text} :'",
                "task.verbalizer={positive: ' good', negative: ' bad'}"]
    if name == "extractive_qa":
        train = write_jsonl(tmp_path / "train.jsonl", qa_rows(make_records(12, seed=1)))
        return ["task=extractive_qa", f"model.name={fixtures['qa_qwen']}", "model.max_length=64",
                "task.doc_stride=16", f"data.train={train}"]
    if name == "sft":
        rows = [ALPACA, MESSAGES, {"instruction": "a much longer prompt " * 20, "output": "negative"}] * 8
        train = write_jsonl(tmp_path / "train.jsonl", rows)
        return ["task=sft", f"model.name={fixtures['tiny_qwen']}", "model.max_length=64", f"data.train={train}"]
    if name == "multiple_choice":
        train = write_jsonl(tmp_path / "train.jsonl", make_mc_rows(24))
        # Option texts: two forwards per step (prompts, then options on their KV cache) under DDP.
        return ["task=multiple_choice", f"model.name={fixtures['tiny_qwen']}", "model.max_length=64",
                f"data.train={train}", "task.scoring=text"]
    corpus, train, _ = fixtures["retrieval_files"]
    return ["task=retrieval", f"model.name={_without_dropout(fixtures['ret_bert'], tmp_path / 'bert')}", "model.max_length=32", f"data.train={train}",
            f"task.corpus={corpus}", "task.pooling=mean",
            "task.mine={hard_if_gold_not_in: 1, negatives: 1, max_similarity: 1.0, train_on: all}"]


def _without_dropout(model: str, folder: Path) -> str:
    """A copy of a BERT folder with dropout off: each process would draw its own dropout masks."""
    import shutil

    shutil.copytree(model, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


# Families with code of their own for several processes run by default; the other two as slow tests.
@pytest.mark.parametrize("family", [pytest.param("classification", marks=pytest.mark.slow), "extractive_qa", "sft",
                                    pytest.param("multiple_choice", marks=pytest.mark.slow), "retrieval"])
def test_two_processes_train_what_one_process_trains(family, tmp_path, request):
    fixtures = {n: request.getfixturevalue(n) for n in ("tiny_qwen", "qa_qwen", "ret_bert", "retrieval_files")
                if n != "retrieval_files" or family == "retrieval"}
    args = _family(family, tmp_path, fixtures)
    one, _ = _train(tmp_path, "one", 1, args)
    two, stderr = _train(tmp_path, "two", 2, args)
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and any("lora_B" in k for k in a)
    moved = max(float(t.abs().max()) for k, t in a.items() if "lora_B" in k)
    assert moved > 1e-3  # LoRA B starts at zero: training happened
    # Each tensor within 1e-3 of its size, measured by norm: Adam's first steps amplify the reduction-order noise
    # of single elements whose gradient is near zero (on an AVX-512 CPU one element of a multiple-choice LoRA
    # tensor moved 1.6e-3 of that tensor's largest value), while rows dropped or split wrongly move whole tensors.
    for key in a:
        assert (a[key] - b[key]).norm() <= 1e-3 * max(float(a[key].norm()), 1e-2), key
    log = (two / "train.log").read_text()
    assert log.count("tasktune 0.1.0:") == 1 and "x 2 process(es)" in log
    assert json.loads((two / "env.json").read_text())["processes"] == 2
    steps = [h["step"] for h in json.loads((two / "metrics_history.json").read_text()) if "loss" in h]
    assert steps == [1, 2, 3]  # one history entry per step, not one per process
    if family == "sft":  # a warning of the data, said once and not once per process
        assert stderr.count("training prompts are longer than model.max_length") == 1
    if family == "retrieval":  # stage 1 (rank, mine) ran on the main process; the other trained on ITS rows
        assert (two / "hard_negatives.jsonl").is_file() and (two / "stage1/evaluation_results.json").is_file()


def test_on_main_process_runs_work_once_and_raises_its_errors():
    """One process: the work's result as is; an error inside it propagates (several processes: to every one)."""
    from types import SimpleNamespace

    from tasktune.engine.distributed import on_main_process

    calls = []
    ps = SimpleNamespace(num_processes=1, is_main_process=True)
    assert on_main_process(ps, lambda: calls.append(1) or "splits") == "splits" and calls == [1]
    with pytest.raises(ValueError, match="bad corpus"):
        on_main_process(ps, lambda: (_ for _ in ()).throw(ValueError("bad corpus")))


def test_an_error_in_main_process_stage_stops_every_process(tmp_path, ret_bert, retrieval_files):
    """Stage 1 fails on the main process (no hard query to train on): the other process gets the same error
    instead of waiting for splits that never come; torchrun ends with status 2, in seconds."""
    corpus, train, _ = retrieval_files
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("{}\n")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "tasktune", "train", str(cfg), *COMMON, "task=retrieval",
           f"model.name={ret_bert}", "model.max_length=32", f"data.train={train}", f"task.corpus={corpus}",
           "task.mine={hard_if_gold_not_in: 100, negatives: 1, train_on: hard}", f"output_dir={tmp_path / 'run'}",
           "train.batch_size=4"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("error: task.mine: no training query is hard") == 2, proc.stderr[-3000:]
