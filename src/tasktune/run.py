"""The one pipeline: config -> run folder -> train; run folder (or model) -> evaluate / predict.

Every CLI verb that touches a model lands here. Heavy libraries (torch, transformers) are
imported inside functions so that config and data errors are reported in well under a second.

Example:
    cfg = load_config("cfg.yaml", ["output_dir=runs/x"])
    train(cfg)                           # writes runs/x/...
    evaluate(run="runs/x", baseline=True)
    predict(run="runs/x", text="房间很干净")
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

from tasktune import __version__
from tasktune.atomic import write_json, write_jsonl
from tasktune.config import Config
from tasktune.data.dataset import check_rows, load_splits, read_rows
from tasktune.errors import UserError
from tasktune.models.loading import resolve_model, to_device
from tasktune.models.peft_adapters import weights_sha256
from tasktune.rundir import BEST, check_run_dir, prepare_run_dir, setup_logging, write_env
from tasktune.tasks import get_task

log = logging.getLogger("tasktune")
SUMMARY_KEYS = ("accuracy", "macro_f1", "exact", "f1")


def validate(cfg: Config) -> dict:
    """Every check a run makes before loading a model; returns a summary of what training would do."""
    task = get_task(cfg.task.name)
    resolve_model(cfg.model.name)
    splits = load_splits(cfg, task)
    resume = check_run_dir(cfg, splits.info)
    return {"task": task.name, "train_rows": len(splits.train), "eval_rows": len(splits.eval),
            "test_rows": len(splits.test or []), "state": splits.state,
            "run_dir": "resume from " + str(resume) if resume else f"new run in {cfg.output_dir}"}


def train(cfg: Config, overwrite: bool = False, callbacks=()) -> dict:
    """Train `cfg` into its run folder; returns the final eval metrics (empty without eval data)."""
    task = get_task(cfg.task.name)
    model_path = resolve_model(cfg.model.name)
    splits = load_splits(cfg, task)
    run_dir = Path(cfg.output_dir)

    from tasktune.engine.callbacks import truncate_history
    from tasktune.engine.checkpoints import checkpoint_step, newest_complete_checkpoint
    from tasktune.engine.trainer import distributed_state

    ps = distributed_state()
    # The main process decides (and may delete an old folder) before the others look at the folder.
    with ps.main_process_first():
        resume = prepare_run_dir(cfg, splits.info, overwrite) if ps.is_main_process \
            else newest_complete_checkpoint(run_dir)
    history = []
    if ps.is_main_process:
        setup_logging(run_dir)
        write_env(run_dir, cfg, str(resume) if resume else None)
        history = truncate_history(run_dir, checkpoint_step(resume) if resume else 0)
        log.info("tasktune %s: %s on %s, %d train / %d eval rows -> %s%s", __version__, task.name, cfg.model.name,
                 len(splits.train), len(splits.eval), run_dir, f" (resuming {resume.name})" if resume else "")

    from transformers import set_seed

    from tasktune.engine.trainer import build_trainer

    set_seed(cfg.train.seed)  # new heads are initialised here, before the Trainer seeds anything
    model, tok = task.build_model(model_path, cfg, splits.state, for_training=True)
    feats = task.prepare(splits.train, tok, cfg, splits.state)
    eval_during = splits.eval and cfg.train.eval_during_training
    eval_feats = task.prepare(splits.eval, tok, cfg, splits.state) if eval_during else []
    trainer = build_trainer(task, cfg, model, tok, feats, eval_feats, splits.state, run_dir, history, callbacks,
                            eval_rows=splits.eval if eval_during else [])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    _save_best(trainer, tok, cfg, splits.state, run_dir, model_path, ps)
    if not ps.is_main_process:
        return {}
    results = {}
    for split, rows in (("eval", splits.eval), ("test", splits.test)):
        if rows:
            results[split] = _evaluate_rows(task, trainer.model, tok, cfg, splits.state, rows, run_dir / "eval" / split)[0]
    if cfg.baseline.after_training and splits.eval:
        comparison = run_baselines(task, cfg, splits.state, splits.eval, run_dir / "eval" / "eval", results["eval"])
        results["eval"] = {**results["eval"], "baselines": comparison["methods"]}
    log.info("done: best model in %s", run_dir / BEST)
    return results.get("eval", {})


def _save_best(trainer, tok, cfg, state, run_dir: Path, model_path: str, ps) -> None:
    """best/: the model (best by train.best_metric), tokenizer and tasktune.json, renamed into place whole."""
    tmp = run_dir / f".{BEST}.tmp"
    trainer.save_model(str(tmp))
    ps.wait_for_everyone()
    if not ps.is_main_process:
        return
    tok.save_pretrained(str(tmp))
    best_ckpt = trainer.state.best_model_checkpoint
    write_json(tmp / "tasktune.json", {
        "tasktune_version": __version__, "task": cfg.task.name, "state": state,
        "base_model": {"name": cfg.model.name, "path": model_path,
                       "sha256": weights_sha256(model_path) if cfg.model.lora else None},
        "best_checkpoint": Path(best_ckpt).name if best_ckpt else None,
        "best_metric": {cfg.train.best_metric: trainer.state.best_metric},
        "config": cfg.model_dump(mode="json"),
    })
    if (run_dir / BEST).exists():
        shutil.rmtree(run_dir / BEST)
    tmp.rename(run_dir / BEST)


def _evaluate_rows(task, model, tok, cfg, state, rows, out_dir: Path) -> tuple[dict, list[dict]]:
    """Predict `rows`, write predictions.jsonl, metrics.json (and plots) into `out_dir`; return (metrics, preds)."""
    preds = task.predict(to_device(model), tok, rows, cfg, state, cfg.train.eval_batch_size or 32)
    return _write_eval(task, preds, rows, state, out_dir), preds


def _write_eval(task, preds, rows, state, out_dir: Path, extra: dict | None = None) -> dict:
    metrics = {**task.metrics(preds, rows, state), **(extra or {})}
    write_jsonl(out_dir / "predictions.jsonl", preds)
    write_json(out_dir / "metrics.json", {"rows": len(rows), **metrics})
    if "confusion_matrix" in metrics:
        from tasktune.plots import plot_confusion

        plot_confusion(metrics["confusion_matrix"], state["labels"], out_dir / "confusion_matrix.png")
    shown = ", ".join(f"{k} {metrics[k]:.4f}" for k in SUMMARY_KEYS if k in metrics)
    log.info("%s (%d rows): %s -> %s", out_dir.name, len(rows), shown, out_dir)
    return metrics


def _tune_thresholds(task, state, preds, rows, out_dir: Path, run: str, before: dict) -> dict:
    """Fit the task's decision thresholds on `rows`, store them in RUN/best/tasktune.json, re-score."""
    new_state, preds, report = task.fit_thresholds(preds, rows, state)
    meta_path = Path(run) / BEST / "tasktune.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["state"] = new_state
    write_json(meta_path, meta)
    tuned = {"thresholds": report, "before_tuning": {k: before[k] for k in SUMMARY_KEYS if k in before}}
    metrics = _write_eval(task, preds, rows, new_state, out_dir, tuned)
    log.info("null threshold %s -> %s, stored in %s; tuned on these %d rows, so their scores are optimistic: "
             "check on other data (data.test or --data)", state.get("null_threshold"),
             new_state.get("null_threshold"), meta_path, len(rows))
    return metrics


def load_run(run: str | Path) -> tuple[object, Config, dict, Path]:
    """(task, config, state, best folder) of a finished run; raises UserError for anything else."""
    best = Path(run) / BEST
    meta_path = best / "tasktune.json"
    if not meta_path.is_file():
        hint = "it has no best/ yet: train it first" if Path(run).is_dir() else "no such folder"
        raise UserError(f"'{run}' is not a finished tasktune run ({hint}); pass a run folder or use --model")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    cfg = Config.model_validate(meta["config"])
    return get_task(meta["task"]), cfg, meta["state"], best


def _eval_rows_for(task, cfg, state, data: str | None, run: str | None) -> tuple[str, list[dict]]:
    """(split name, labelled rows): --data's rows, or the run's own eval split."""
    if data:
        rows, table, _ = read_rows(data, task, cfg.data.columns)
        rows = check_rows(task, rows, table.where, state, skip=cfg.data.skip_invalid_rows)
        return Path(data).stem, rows
    if run is None:
        raise UserError("eval --model needs --data FILE with labelled rows")
    splits = load_splits(cfg, task, state)
    recorded = json.loads((Path(run) / "data.json").read_text(encoding="utf-8"))
    if splits.info["split"]["eval_ids"] != recorded["split"]["eval_ids"]:
        raise UserError(f"the data files of run '{run}' changed since training, so its eval split cannot be "
                        "rebuilt; pass --data FILE to evaluate on a file")
    if not splits.eval:
        raise UserError(f"run '{run}' has no eval split (data.eval was null); pass --data FILE")
    return "eval", splits.eval


def evaluate(run: str | None = None, model: str | None = None, task_name: str | None = None,
             data: str | None = None, baseline: bool = False, columns: dict | None = None,
             out: str | None = None, config: Config | None = None, tune_null_threshold: bool = False) -> dict:
    """Evaluate a run's best model (or any `model`, with `config`'s task settings) on labelled rows.

    Writes predictions.jsonl and metrics.json into RUN/eval/<split>/ (or `out`); with `baseline`,
    also the baselines' predictions (baselines/<name>.jsonl) and baseline_comparison.json. With
    `tune_null_threshold` (extractive_qa), fits the no-answer thresholds on these rows and stores
    them in RUN/best/tasktune.json for predict.
    """
    if (run is None) == (model is None):
        raise UserError("eval takes a run folder or --model PATH (one of them)")
    if tune_null_threshold and run is None:
        raise UserError("--tune-null-threshold stores the threshold in a run's best/tasktune.json; pass a run folder")
    if run is not None:
        task, cfg, state, path = load_run(run)
        if columns:
            cfg.data.columns = {**cfg.data.columns, **columns}
    else:
        base = config.model_dump(mode="json") if config else {"task": task_name or "classification"}
        base.setdefault("model", {})["name"] = model
        base.setdefault("data", {})["columns"] = {**base.get("data", {}).get("columns", {}), **(columns or {})}
        cfg = Config.model_validate(base)
        task = get_task(cfg.task.name)
        path = resolve_model(model)
        state = task.state_from_model(path, cfg)
    split, rows = _eval_rows_for(task, cfg, state, data, run)
    out_dir = Path(out) if out else (Path(run) / "eval" / split if run else Path("tasktune-eval") / Path(model).name / split)
    setup_logging()
    net, tok = task.build_model(path, cfg, state, for_training=False)
    metrics, preds = _evaluate_rows(task, net, tok, cfg, state, rows, out_dir)
    if tune_null_threshold:
        metrics = _tune_thresholds(task, state, preds, rows, out_dir, run, metrics)
    if baseline:
        run_baselines(task, cfg, state, rows, out_dir, metrics)
    return metrics


def run_baselines(task, cfg, state, rows, out_dir: Path, metrics: dict) -> dict:
    """Score the task's baselines (majority, zero-shot of baseline.model...) on `rows` beside `metrics`.

    Writes out_dir/baselines/<name>.jsonl and out_dir/baseline_comparison.json; logs a table.
    """
    methods = {"model": _summary(metrics)}
    found = dict(task.baselines(rows, state))
    zero_shot = getattr(task, "zero_shot", None)
    if zero_shot is not None:
        base = resolve_model(cfg.baseline.model or cfg.model.name)
        found.update(zero_shot(base, rows, cfg, state, cfg.train.eval_batch_size or 16))
    for name, preds in found.items():
        write_jsonl(out_dir / "baselines" / f"{name}.jsonl", preds)
        methods[name] = _summary(task.metrics(preds, rows, state))
    comparison = {"rows": len(rows), "baseline_model": cfg.baseline.model or cfg.model.name, "methods": methods}
    write_json(out_dir / "baseline_comparison.json", comparison)
    for name, m in methods.items():
        log.info("  %-22s %s", name, "  ".join(f"{k} {m[k]:.4f}" for k in SUMMARY_KEYS if k in m))
    return comparison


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def predict(run: str, text: str | None = None, input: str | None = None, output: str | None = None,
            interactive: bool = False, batch_size: int = 32, question: str | None = None) -> list[dict]:
    """Predict one text, a file of rows (to `output`, or stdout) or lines typed at a prompt.

    `question` (extractive_qa) is asked of --text or of each typed line.
    """
    if sum(x is not None and x is not False for x in (text, input, interactive)) != 1:
        raise UserError("predict takes exactly one of --text, --input FILE or --interactive")
    task, cfg, state, path = load_run(run)
    if question is not None and "question" not in task.input_columns(state)[1]:
        raise UserError(f"--question is for extractive_qa runs; '{run}' is a {task.name} run")
    if question is not None and input is not None:
        raise UserError("--question goes with --text or --interactive; an --input file carries a question column")
    if input is not None:
        rows, table, _ = read_rows(input, task, cfg.data.columns, labelled=False, state=state)
        rows = check_rows(task, rows, table.where, state, labelled=False)
    net, tok = task.build_model(path, cfg, state, for_training=False)
    net = to_device(net)
    if interactive:
        return _interactive(task, net, tok, cfg, state, question)
    if text is not None:
        rows = [_typed_row("text", text, question)]
        problem = task.row_problem(rows[0], state, labelled=False)
        if problem:
            raise UserError(f"--text: {problem}")
    preds = task.predict(net, tok, rows, cfg, state, batch_size)
    if output:
        write_jsonl(output, preds)
        log.info("%d predictions -> %s", len(preds), output)
    else:
        for p in preds:
            print(json.dumps(p, ensure_ascii=False))
    return preds


def _typed_row(row_id: str, text: str, question: str | None) -> dict:
    return {"id": row_id, "text": text, **({"question": question} if question else {})}


def _interactive(task, net, tok, cfg, state, question: str | None = None) -> list[dict]:
    """Read one text per line until EOF; print each prediction as it comes."""
    out = []
    prompt = sys.stdin.isatty()
    while True:
        try:
            line = input("text> ") if prompt else sys.stdin.readline()
        except EOFError:
            break
        if not prompt and line == "":
            break
        if not line.strip():
            continue
        row = _typed_row(str(len(out)), line.strip(), question)
        problem = task.row_problem(row, state, labelled=False)
        if problem:
            print(f"error: {problem}", file=sys.stderr, flush=True)
            continue
        pred = task.predict(net, tok, [row], cfg, state, 1)[0]
        print(json.dumps(pred, ensure_ascii=False), flush=True)
        out.append(pred)
    return out
