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
from tasktune.config import Config, config_from_dict
from tasktune.data.dataset import check_rows, load_splits, read_rows
from tasktune.errors import UserError
from tasktune.metrics.format import metric_line
from tasktune.models.loading import resolve_model, to_device
from tasktune.models.peft_adapters import weights_sha256
from tasktune.rundir import BEST, check_run_dir, prepare_run_dir, setup_logging, write_env
from tasktune.tasks import get_task
from tasktune.tasks.protocol import member

log = logging.getLogger("tasktune")


def validate(cfg: Config) -> dict:
    """Every check a run makes before loading a model; returns a summary of what training would do."""
    task = get_task(cfg.task.name)
    check_metrics(cfg, task)
    from tasktune.models.catalog import install_status

    model = install_status(cfg.model.name) or resolve_model(cfg.model.name, convert=False)
    splits = load_splits(cfg, task)
    resume = check_run_dir(cfg, splits.info)
    return {"task": task.name, "model": f"{cfg.model.name} ({model})" if model != cfg.model.name else model,
            "train_rows": len(splits.train), "eval_rows": len(splits.eval),
            "test_rows": len(splits.test or []), "state": splits.state,
            "run_dir": "resume from " + str(resume) if resume else f"new run in {cfg.output_dir}"}


def train(cfg: Config, overwrite: bool = False, callbacks=()) -> dict:
    """Train `cfg` into its run folder; returns the final eval metrics (empty without eval data)."""
    task = get_task(cfg.task.name)
    check_metrics(cfg, task)
    model_path = resolve_model(cfg.model.name)
    splits = load_splits(cfg, task)
    run_dir = Path(cfg.output_dir)

    from tasktune.engine.callbacks import truncate_history
    from tasktune.engine.checkpoints import checkpoint_step, newest_complete_checkpoint
    from tasktune.engine.distributed import on_main_process
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
    else:
        log.setLevel(logging.ERROR)  # one line per event: the other processes say only what stops them

    from transformers import set_seed

    from tasktune.engine.features import prepared
    from tasktune.engine.trainer import build_trainer

    set_seed(cfg.train.seed)  # new heads are initialised here, before the Trainer seeds anything
    model, tok = task.build_model(model_path, cfg, splits.state, for_training=True)
    before = member(task, "before_training")
    if before is not None:  # once, on the main process (it may rank a corpus and write files); all get its splits
        splits = on_main_process(ps, lambda: before(model, tok, splits, cfg, run_dir))
    feats = prepared(task, splits.train, tok, cfg, splits.state)
    eval_during = splits.eval and cfg.train.eval_during_training
    eval_feats = prepared(task, splits.eval, tok, cfg, splits.state) if eval_during else []
    trainer = build_trainer(task, cfg, model, tok, feats, eval_feats, splits.state, run_dir, history, callbacks,
                            eval_rows=splits.eval if eval_during else [])
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    _save_best(task, trainer, tok, cfg, splits.state, run_dir, model_path, ps)
    if not ps.is_main_process:
        return {}
    results = {}
    for split, rows in (("eval", splits.eval), ("test", splits.test)):
        if rows:
            results[split] = _evaluate_rows(task, trainer.model, tok, cfg, splits.state, rows, run_dir / "eval" / split)[0]
    if cfg.baseline.after_training and splits.eval:
        comparison = run_baselines(task, cfg, splits.state, splits.eval, run_dir / "eval" / "eval", results["eval"])
        results["eval"] = {**results["eval"], "baselines": comparison["methods"]}
    after = member(task, "after_training")
    if after is not None:
        after(trainer.model, tok, splits, cfg, run_dir, results.get("eval", {}))
    log.info("done: best model in %s", run_dir / BEST)
    return results.get("eval", {})


def check_metrics(cfg: Config, task) -> None:
    """train.best_metric and train.early_stopping.metric must be metrics the task reports (or eval_loss);
    train.report_to's trackers must be installed."""
    from tasktune.engine.trackers import check_trackers

    check_trackers(cfg.train.report_to)
    known = ["eval_loss"] + [f"eval_{m}" for m in task.metric_names]
    for key, metric in (("train.best_metric", cfg.train.best_metric),
                        ("train.early_stopping.metric", cfg.train.early_stopping.metric)):
        if metric is not None and metric not in known:
            raise UserError(f"{key}: {task.name} does not report '{metric}'; choose one of {', '.join(known)}")


def _save_best(task, trainer, tok, cfg, state, run_dir: Path, model_path: str, ps) -> None:
    """best/: the model (best by train.best_metric), tokenizer and tasktune.json, renamed into place whole."""
    tmp = run_dir / f".{BEST}.tmp"
    trainer.save_model(str(tmp))
    ps.wait_for_everyone()
    if not ps.is_main_process:
        return
    tok.save_pretrained(str(tmp))
    artifacts = member(task, "save_artifacts")
    if artifacts is not None:
        artifacts(trainer.model, tok, cfg, state, tmp)
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


def with_gold(task, preds: list[dict], rows: list[dict]) -> list[dict]:
    """`preds` with each labelled row's `gold` (what the task scores a prediction against)."""
    labelled = [all(r.get(c) is not None for c in task.label_columns) for r in rows]
    return [{**p, "gold": task.gold(r)} if ok else p for p, r, ok in zip(preds, rows, labelled)]


def _evaluate_rows(task, model, tok, cfg, state, rows, out_dir: Path) -> tuple[dict, list[dict]]:
    """Predict `rows`, write predictions.jsonl, metrics.json (and plots) into `out_dir`; return (metrics, preds)."""
    preds = task.predict(to_device(model), tok, rows, cfg, state, cfg.train.eval_batch_size or 32)
    preds = with_gold(task, preds, rows)
    return _write_eval(task, preds, state, out_dir), preds


def _write_eval(task, preds, state, out_dir: Path, extra: dict | None = None) -> dict:
    metrics = {**task.metrics(preds, state), **(extra or {})}
    write_jsonl(out_dir / "predictions.jsonl", preds)
    write_json(out_dir / "metrics.json", {"rows": len(preds), **metrics})
    plots = member(task, "write_plots")
    if plots is not None:
        plots(metrics, state, out_dir)
    log.info("%s (%d rows): %s -> %s", out_dir.name, len(preds), metric_line(metrics, task.summary_metrics), out_dir)
    return metrics


def _tune(task, state, preds, out_dir: Path, run: str, before: dict) -> dict:
    """Fit the task's decision thresholds on labelled `preds`, store them in RUN/best/tasktune.json, re-score."""
    tune = member(task, "tune")
    if tune is None:
        raise UserError(f"{task.name} has no decision threshold to tune; --tune-null-threshold is for tasks that "
                        "have one (extractive_qa)")
    new_state, preds, report = tune(preds, state)
    meta_path = Path(run) / BEST / "tasktune.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["state"] = new_state
    write_json(meta_path, meta)
    tuned = {"thresholds": report, "before_tuning": {k: before[k] for k in task.summary_metrics if k in before}}
    metrics = _write_eval(task, preds, new_state, out_dir, tuned)
    log.info("thresholds fitted on these %d rows and stored in %s: %s. Scores on the rows a threshold was "
             "fitted on are optimistic: check on other data (data.test or --data)", len(preds), meta_path, report)
    return metrics


def load_run(run: str | Path) -> tuple[object, Config, dict, Path]:
    """(task, config, state, best folder) of a finished run; raises UserError for anything else."""
    best = Path(run) / BEST
    meta_path = best / "tasktune.json"
    if not meta_path.is_file():
        hint = "it has no best/ yet: train it first" if Path(run).is_dir() else "no such folder"
        raise UserError(f"'{run}' is not a finished tasktune run ({hint}); pass a run folder or use --model")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    cfg = config_from_dict(meta["config"], str(meta_path))
    return get_task(meta["task"]), cfg, meta["state"], best


def _eval_rows_for(task, cfg, state, data: str | None, run: str | None) -> tuple[str, list[dict]]:
    """(split name, labelled rows): --data's rows, or the run's own eval split."""
    if data:
        rows, table, _ = read_rows(data, task, cfg.data.columns)
        rows = check_rows(task, rows, table.where, cfg, state, skip=cfg.data.skip_invalid_rows)
        return Path(data).stem, rows
    if not (Path(run) / "data.json").is_file():
        raise UserError(f"run '{run}' has no data.json (an ensemble, or a copied best/); pass --data FILE")
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
             out: str | None = None, config: Config | None = None, tune: bool = False,
             overrides: list[str] = ()) -> dict:
    """Evaluate a run's best model (or any `model`, with `config`'s task settings) on labelled rows.

    Writes predictions.jsonl and metrics.json into RUN/eval/<split>/ (or `out`); with `baseline`,
    also the baselines' predictions (baselines/<name>.jsonl) and baseline_comparison.json. With
    `tune`, fits the task's decision thresholds (extractive QA: no answer) on these rows and stores
    them in RUN/best/tasktune.json for predict. `overrides` (key=value) change the run's settings for this
    evaluation only; its outputs then go to RUN/eval/<split>-<overrides> unless `out` is given.
    """
    if (run is None) == (model is None):
        raise UserError("eval takes a run folder or --model PATH (one of them)")
    if tune and run is None:
        raise UserError("--tune-null-threshold stores the threshold in a run's best/tasktune.json; pass a run folder")
    if run is not None:
        task, cfg, state, path = load_run(run)
        if overrides:
            from tasktune.config import load_config

            cfg = load_config(None, list(overrides), base=cfg.model_dump(mode="json"))
        if columns:
            cfg.data.columns = {**cfg.data.columns, **columns}
        split, rows = _eval_rows_for(task, cfg, state, data, run)
        if overrides and not out:
            out = str(Path(run) / "eval" / "-".join([split, *overrides]).replace("/", "_").replace(" ", ""))
    else:
        cfg = _model_config(model, task_name, config, columns)
        task = get_task(cfg.task.name)
        path = resolve_model(model)
        if not data:
            raise UserError("eval --model needs --data FILE with labelled rows")
        rows, table, _ = read_rows(data, task, cfg.data.columns)
        rows = check_rows(task, rows, table.where, cfg, None, skip=cfg.data.skip_invalid_rows)
        state = task.state_from_model(path, cfg, rows)
        split, rows = Path(data).stem, check_rows(task, rows, table.where, cfg, state, skip=cfg.data.skip_invalid_rows)
    out_dir = Path(out) if out else (Path(run) / "eval" / split if run else Path("tasktune-eval") / Path(model).name / split)
    setup_logging()
    net, tok = task.build_model(path, cfg, state, for_training=False)
    metrics, preds = _evaluate_rows(task, net, tok, cfg, state, rows, out_dir)
    if tune:
        metrics = _tune(task, state, preds, out_dir, run, metrics)
    if baseline:
        run_baselines(task, cfg, state, rows, out_dir, metrics)
    return metrics


def _model_config(model: str, task_name: str | None, config: Config | None, columns: dict | None) -> Config:
    """The config for evaluating a model tasktune did not train: --config's settings, or --task's defaults."""
    if config is None and not task_name:
        raise UserError("eval --model needs --task NAME (see `tasktune tasks`) or --config FILE")
    base = config.model_dump(mode="json") if config else {"task": {"name": task_name}}
    base.setdefault("model", {})["name"] = model
    base.setdefault("data", {})["columns"] = {**base.get("data", {}).get("columns", {}), **(columns or {})}
    return config_from_dict(base, "eval --model")


def run_baselines(task, cfg, state, rows, out_dir: Path, metrics: dict) -> dict:
    """Score the task's baselines (majority, zero-shot of baseline.model...) on `rows` beside `metrics`.

    Writes out_dir/baselines/<name>.jsonl and out_dir/baseline_comparison.json; logs a table.
    """
    methods = {"model": _summary(metrics)}
    trivial, zero_shot = member(task, "baselines"), member(task, "zero_shot")
    found = dict(trivial(rows, state)) if trivial else {}
    if zero_shot is not None:
        base = resolve_model(cfg.baseline.model or cfg.model.name)
        found.update(zero_shot(base, rows, cfg, state, cfg.train.eval_batch_size or 16))
    for name, preds in found.items():
        preds = with_gold(task, preds, rows)
        write_jsonl(out_dir / "baselines" / f"{name}.jsonl", preds)
        methods[name] = _summary(task.metrics(preds, state))
    comparison = {"rows": len(rows), "baseline_model": cfg.baseline.model or cfg.model.name, "methods": methods}
    write_json(out_dir / "baseline_comparison.json", comparison)
    for name, m in methods.items():
        log.info("  %-22s %s", name, metric_line(m, task.summary_metrics))
    return comparison


def _summary(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float))}


def predict(run: str, text: str | None = None, input: str | None = None, output: str | None = None,
            interactive: bool = False, batch_size: int = 32, extra: dict | None = None,
            submission: str | None = None) -> list[dict]:
    """Predict one text, a file of rows (to `output`, or stdout) or lines typed at a prompt.

    `extra` holds the task's other fields for --text / --interactive rows (extractive QA: a question);
    `submission` also writes the task's submission file (multiple choice: id,prediction).
    """
    extra = {k: v for k, v in (extra or {}).items() if v is not None}
    if sum(x is not None and x is not False for x in (text, input, interactive)) != 1:
        raise UserError("predict takes exactly one of --text, --input FILE or --interactive")
    task, cfg, state, path = load_run(run)
    write_submission = member(task, "write_submission")
    if submission and (write_submission is None or input is None):
        raise UserError("--submission goes with --input FILE" if write_submission else
                        f"--submission: {task.name} runs have no submission format (multiple_choice has)")
    if input is not None:
        if extra:
            raise UserError(f"--{next(iter(extra))} goes with --text or --interactive; an --input file carries "
                            "that column")
        rows, table, _ = read_rows(input, task, cfg.data.columns, labelled=False, state=state)
        rows = check_rows(task, rows, table.where, cfg, state, labelled=False)
    else:
        make_row = member(task, "text_row")
        if make_row is None:
            raise UserError(f"predict --text/--interactive is not available for {task.name} runs; use --input FILE")
        make_row("", extra)  # refuses extras the task does not take, before the model loads
    net, tok = task.build_model(path, cfg, state, for_training=False)
    net = to_device(net)
    if interactive:
        return _interactive(task, net, tok, cfg, state, extra)
    if text is not None:
        rows = [_text_row(task, cfg, state, text, extra, "--text")]
    preds = with_gold(task, task.predict(net, tok, rows, cfg, state, batch_size), rows)
    if submission:
        write_submission(preds, submission)
        log.info("submission of %d rows -> %s", len(preds), submission)
    if output:
        write_jsonl(output, preds)
        log.info("%d predictions -> %s", len(preds), output)
    else:
        for p in preds:
            print(json.dumps(p, ensure_ascii=False))
    return preds


def _text_row(task, cfg, state, text: str, extra: dict, where: str) -> dict:
    """The row the task builds from a typed text, checked as an unlabelled row."""
    from tasktune.tasks.protocol import RowError

    try:
        return task.parse_row(task.text_row(text, extra), cfg, state, labelled=False)
    except RowError as problem:
        raise UserError(f"{where}: {problem}") from None


def _interactive(task, net, tok, cfg, state, extra: dict) -> list[dict]:
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
        try:
            row = {**_text_row(task, cfg, state, line.strip(), extra, "input"), "id": str(len(out))}
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            continue
        pred = task.predict(net, tok, [row], cfg, state, 1)[0]
        print(json.dumps(pred, ensure_ascii=False), flush=True)
        out.append(pred)
    return out
