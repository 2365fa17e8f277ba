"""From config to checked rows: read files, map columns, split, sample, validate.

This is every data check a run makes; `tasktune data validate` calls it without loading a model.

Example:
    splits = load_splits(cfg, task)
    splits.train[0]   # {'text': '...', 'label': 'positive', 'id': 'train.csv#2'}
    splits.info       # files (sha256, rows) and the ids of the train/eval split, for data.json
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from tasktune.data.builtin import resolve_data_path
from tasktune.data.readers import map_columns, read_table
from tasktune.data.split import sample_rows, stratified_split
from tasktune.errors import UserError
from tasktune.fingerprint import sha256_files
from tasktune.tasks.protocol import RowError, member

log = logging.getLogger("tasktune")


@dataclass
class Splits:
    train: list[dict]
    eval: list[dict]
    test: list[dict] | None
    state: dict
    info: dict = field(default_factory=dict)


def input_columns(task, state: dict | None) -> tuple[list[str], list[str]]:
    """(required, optional) fields of unlabelled rows (predict): the task's own rule, or its required
    fields minus the label fields (which become optional)."""
    own = member(task, "input_columns")
    if own is not None:
        return own(state)
    required = [c for c in task.required_columns if c not in task.label_columns]
    return required, task.optional_columns + task.label_columns


def read_rows(spec: str, task, columns: dict, labelled: bool = True,
              state: dict | None = None) -> tuple[list[dict], object, dict]:
    """Rows of one file with task field names and an `id` each, plus the table and file info.

    Unlabelled rows (for predict) need the columns `input_columns(task, state)` names.
    Rows without an id column get `<file name>#<line>` ids, stable across runs.
    """
    path = resolve_data_path(spec)
    table = read_table(path)
    required, optional = (task.required_columns, task.optional_columns) if labelled else input_columns(task, state)
    rows = map_columns(table, columns, required, optional)
    base = os.path.basename(path)
    for i, row in enumerate(rows):
        row["id"] = str(row["id"]) if row.get("id") is not None else f"{base}#{table.lines[i]}"
    info = {"path": os.path.abspath(path), "sha256": sha256_files([path]), "rows": len(rows)}
    return rows, table, info


def check_rows(task, rows: list[dict], where, cfg, state: dict | None, labelled: bool = True,
               skip: bool = False) -> list[dict]:
    """The rows as `task.parse_row` returns them; the first bad row raises UserError naming `where(i)`,
    unless `skip` (data.skip_invalid_rows), which drops bad rows and logs how many and the first."""
    kept, bad = [], []
    for i, row in enumerate(rows):
        try:
            kept.append(task.parse_row(row, cfg, state, labelled))
        except RowError as problem:
            if not skip:
                hint = " (or set data.skip_invalid_rows=true to drop such rows)" if labelled else ""
                raise UserError(f"{where(i)}: {problem}{hint}") from None
            bad.append(f"{where(i)}: {problem}")
    if bad:
        log.warning("skipped %d invalid row(s); first: %s", len(bad), bad[0])
    return kept


def load_splits(cfg, task, state: dict | None = None) -> Splits:
    """Train, eval (and test) rows for `cfg`, validated; `state` is derived from train unless given."""
    if not cfg.data.train:
        raise UserError("data.train is not set; add it to the config or pass data.train=FILE")
    seed = cfg.data.seed if cfg.data.seed is not None else cfg.train.seed
    train, table, train_info = read_rows(cfg.data.train, task, cfg.data.columns)
    skip = cfg.data.skip_invalid_rows
    train = check_rows(task, train, table.where, cfg, None, skip=skip)
    files, split = {"train": train_info}, {"seed": seed}
    evals: list[dict] = []
    key, group = _split_functions(task, train)
    if isinstance(cfg.data.eval, float):
        train, evals = stratified_split(train, cfg.data.eval, seed, key, group)
        how = "stratified" if group is None else "rows of one group (a context, a record, a query) kept together"
        split["eval"] = f"{cfg.data.eval:g} of data.train held out (seed {seed}, {how})"
    train = sample_rows(train, cfg.data.max_train_rows, seed, key)
    state = state or task.setup(train, cfg)
    if isinstance(cfg.data.eval, str):
        evals, table, files["eval"] = read_rows(cfg.data.eval, task, cfg.data.columns)
        evals = check_rows(task, evals, table.where, cfg, state, skip=skip)
    evals = sample_rows(evals, cfg.data.max_eval_rows, seed, key)
    test = None
    if cfg.data.test:
        test, table, files["test"] = read_rows(cfg.data.test, task, cfg.data.columns)
        test = check_rows(task, test, table.where, cfg, state, skip=skip)
    split.update(train_ids=[r["id"] for r in train], eval_ids=[r["id"] for r in evals])
    return Splits(train, evals, test, state, {"files": files, "split": split})


def _split_functions(task, rows: list[dict]):
    """(stratum, group) key functions from `task.split_keys`; group is None when no row has one."""
    def stratum(row):
        return task.split_keys(row)[0]

    def group(row):
        return task.split_keys(row)[1]

    return stratum, (group if any(group(r) is not None for r in rows) else None)
