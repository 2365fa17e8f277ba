"""Typed run config: one YAML file, grouped by concern, with dotted command-line overrides.

Sections: `task`, `model`, `data`, `train`, `output_dir`. Every field's description is also the
`tasktune train --help` text. Relative paths are relative to the directory tasktune runs in.

Example:
    cfg = load_config("cfg.yaml", ["train.epochs=2", "output_dir=runs/x"])
    cfg.train.epochs  # 2.0
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, create_model, field_validator,
                      model_validator)

from tasktune.errors import UserError, did_you_mean

# The schedules transformers' Trainer accepts (transformers.trainer_utils.SchedulerType; a test keeps
# them in step), checked when the config is read rather than inside training.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
              "warmup_stable_decay", "greedy")


def _moved(values, section: str, key: str, why: str):
    """A key that moved into the task's own section: say where it lives now, with the value to write."""
    if isinstance(values, dict) and key in values:
        raise ValueError(f"{section}.{key} is now task.{key} ({why}); write task.{key}: {values[key]}")
    return values


class Section(BaseModel):
    # Unknown keys are errors (with a "did you mean"), never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskSettings(Section):
    """The `task:` section. Each family subclasses it in its own file (tasks/<name>.py) with its settings."""

    name: str = Field(..., description="Task family: one of `tasktune tasks`, e.g. classification.")

    def check(self, cfg) -> str | None:
        """A rule across config sections (e.g. a window stride against model.max_length): the error, or None."""
        return None


class LoraSettings(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )
    layers: int | list[int] | None = Field(
        None, description="Adapt only these transformer layers: a list of indices, or N for the top N. The "
        "backward pass stops below the lowest adapted layer (faster); null: every layer.")
    modules_to_save: list[str] | None = Field(
        None, description="Extra modules trained in full and saved with the adapter (task heads are added for you)."
    )


class ModelConfig(Section):
    name: str = Field(..., description="Local folder, catalog name (`tasktune models list`) or Hub id.")
    max_length: int = Field(256, gt=0, description="Tokens per example; longer inputs are truncated.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Dtype to load weights in; auto keeps the checkpoint's own dtype."
    )
    lora: LoraSettings | None = Field(None, description="LoRA adapters (peft); absent = full fine-tuning.")
    quantization: Literal["4bit", "8bit"] | None = Field(
        None, description="Load the frozen base in 4 or 8 bits (bitsandbytes) and train LoRA on it: QLoRA."
    )
    gradient_checkpointing: bool = Field(False, description="Recompute activations to save memory.")
    attn_implementation: Literal["sdpa", "eager", "flex_attention", "flash_attention_2"] | None = Field(
        None, description="Attention kernel (transformers' attn_implementation); null = the library's choice (sdpa). "
        "With train.packing, sdpa attends through a dense block mask (measured 0.47x on an H200, bench/RESULTS.md); "
        "flex_attention and flash_attention_2 read packed rows without one. flex_attention trains on GPUs only.")
    attention: Literal["causal", "bidirectional"] = Field(
        "causal", description="bidirectional: every token attends to the whole input (decoders that have the "
        "switch, e.g. Gemma 3; encoders already do). For heads and embeddings, not for tasks that generate or "
        "score next tokens.")

    @model_validator(mode="before")
    @classmethod
    def _method_moved(cls, values):
        return _moved(values, "model", "method", "it belongs to the task")

    @model_validator(mode="after")
    def _quantization_needs_lora(self):
        if self.quantization and self.lora is None:
            raise ValueError("model.quantization trains LoRA adapters on a frozen quantized base; "
                             "add model.lora (e.g. model.lora={r: 8})")
        return self


class DataConfig(Section):
    train: str | None = Field(None, description="Training file (jsonl, json, csv, tsv, parquet).")
    eval: str | float | None = Field(
        0.1, description="Eval file, or a fraction of train held out (seeded, stratified by label); null for none."
    )
    test: str | None = Field(None, description="Optional test file, evaluated once after training.")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Task field -> column in your files, e.g. {text: review, label: sentiment}."
    )
    skip_invalid_rows: bool = Field(
        False, description="Drop rows that fail checks (empty text, unknown label) with a warning, instead of stopping."
    )
    seed: int | None = Field(None, description="Seed of the train/eval split and row sampling; default train.seed.")
    max_train_rows: int | None = Field(None, gt=0, description="Use at most this many training rows (seeded sample).")
    max_eval_rows: int | None = Field(None, gt=0, description="Use at most this many eval rows (seeded sample).")
    cache_features: bool = Field(True, description="Keep tokenised training features in $TASKTUNE_CACHE/features, "
                                 "keyed by rows, tokenizer, template and settings: a rerun skips tokenisation.")

    @field_validator("eval")
    @classmethod
    def _fraction_in_range(cls, v):
        if isinstance(v, float) and not 0.0 < v < 1.0:
            raise ValueError("an eval fraction must lie strictly between 0 and 1, e.g. 0.1")
        return v


class EarlyStoppingConfig(Section):
    patience: int | None = Field(None, ge=1, description="Stop after this many evals without improvement; null = off.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change of the metric that counts as improvement.")
    metric: str | None = Field(None, description="Metric to watch (e.g. eval_macro_f1); default: train.best_metric.")

    @field_validator("metric")
    @classmethod
    def _eval_prefix(cls, v):
        return v if v is None or v.startswith("eval_") else f"eval_{v}"


class TrainConfig(Section):
    epochs: float = Field(3.0, gt=0, description="Passes over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (overrides epochs when > 0).")
    batch_size: int = Field(8, gt=0, description="Examples per device per forward pass.")
    eval_batch_size: int | None = Field(None, gt=0, description="Eval batch size per device; default batch_size.")
    effective_batch_size: int | None = Field(
        None, gt=0,
        description="Examples per optimizer step over all devices; gradient accumulation is derived from it.",
    )
    learning_rate: float = Field(2e-5, gt=0, description="Peak learning rate.")
    head_learning_rate: float | None = Field(
        None, gt=0,
        description="Peak learning rate of the task's newly made head layers (span head, classification head); "
                    "null: train.learning_rate. A new head on a frozen or LoRA backbone often wants 10-100x more.",
    )
    lr_scheduler: Literal[SCHEDULERS] = Field("linear", description="Schedule after warmup: " + ", ".join(SCHEDULERS) + ".")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps spent warming up the learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the task's loss.")
    seed: int = Field(42, description="Seed for weights init, data order and the train/eval split.")
    packing: bool = Field(
        False, description="Pack each batch's examples back to back (attention stays within each example): no "
        "compute on padding. label scoring: the batch in one sequence; sft: rows of up to model.max_length tokens. "
        "Pays on CPUs (1.7x measured); on a GPU with SDPA the pack's dense mask made it 0.54x (bench/RESULTS.md): "
        "leave it off there.")
    sampling: Literal["random", "batch_rebalance"] = Field(
        "random", description="random: each forward pass's rows drawn at random. batch_rebalance: each optimizer "
        "step's rows are still drawn at random, then sorted by length into forward passes of similar length "
        "(longer rows in smaller ones; transformers' BatchRebalanceSampler): less padding, the same rows per step. "
        "Needs gradient accumulation (train.effective_batch_size above train.batch_size x processes).")
    bf16: Literal["auto"] | bool = Field(
        "auto", description="bfloat16 autocast (mixed precision; trainable weights stay fp32). auto: on where bf16 is "
        "fast (GPUs with bf16, CPUs with bf16 units: a short probe decides); true: always; false: never.")
    compile: bool = Field(
        False, description="torch.compile each transformer layer (dynamic shapes) for training: a one-off compile "
        "(about a minute on 2 CPU cores), then 1.07x per step there; it pays on long runs only (bench/RESULTS.md).")
    logging_steps: int = Field(10, gt=0, description="Log loss and learning rate every N optimizer steps.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate and checkpoint every N steps; default each epoch.")
    save_total_limit: int = Field(2, ge=1, description="Newest checkpoints kept (the best one is kept too).")
    eval_during_training: bool = Field(
        True, description="Evaluate (and keep the best checkpoint) during training; off: evaluate once at the end."
    )
    best_metric: str = Field("eval_loss", description="Metric that picks best/ (e.g. eval_accuracy, eval_macro_f1).")
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    curves_every: int = Field(5, gt=0, description="Redraw training_curves.png every N logging steps.")
    num_workers: int = Field(0, ge=0, description="Data-loader worker processes.")
    fsdp: bool = Field(False, description="Shard weights, gradients and optimizer state over the processes "
                       "(transformers' TrainingArguments.fsdp; GPUs only), configured by train.fsdp_config.")
    fsdp_config: dict | None = Field(None, description="TrainingArguments.fsdp_config, e.g. {fsdp_version: 2, "
                                     "reshard_after_forward: true, auto_wrap_policy: TRANSFORMER_BASED_WRAP}.")
    deepspeed: str | None = Field(None, description="A DeepSpeed JSON config file (ZeRO stages), passed to "
                                  "TrainingArguments.deepspeed; needs `pip install deepspeed`.")
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: an unfinished run folder continues from its newest complete checkpoint."
    )
    report_to: list[str] = Field(
        default_factory=list, description="Trackers (installed separately): tensorboard, wandb, mlflow, ...; a name "
        "or a list.")
    eval_sample: int | None = Field(
        None, gt=0, description="Compute the task's metrics during training on at most this many eval rows (seeded; "
        "eval loss and the final evaluation use every row). Generation and retrieval tasks want it.")

    @model_validator(mode="before")
    @classmethod
    def _class_weights_moved(cls, values):
        return _moved(values, "train", "class_weights", "weights name the task's labels")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, v):
        return [] if v in (None, "none") else [v] if isinstance(v, str) else v

    @field_validator("best_metric")
    @classmethod
    def _eval_prefix(cls, v):
        return v if v.startswith("eval_") else f"eval_{v}"


class BaselineConfig(Section):
    model: str | None = Field(None, description="Model for the zero-shot baseline; default: the run's base model.")
    after_training: bool = Field(False, description="Evaluate the baselines right after training and print them.")


class Config(Section):
    """The whole run config. Validate through `load_config` / `config_from_dict`, which pick the task's
    own `task:` section class from the registry (`config_class`)."""

    task: SerializeAsAny[TaskSettings]
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    output_dir: str = Field("runs/default", description="The run folder.")

    @model_validator(mode="after")
    def _task_rules(self):
        problem = self.task.check(self)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="before")
    @classmethod
    def _task_shorthand(cls, values):
        # `task: classification` is shorthand for `task: {name: classification}`.
        if isinstance(values, dict) and isinstance(values.get("task"), str):
            values = {**values, "task": {"name": values["task"]}}
        return values


def _yaml_lines(text: str) -> dict[tuple, int]:
    """Map each key path in a YAML document to its 1-based line, for error messages."""
    lines: dict[tuple, int] = {}

    def walk(node, prefix):
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = prefix + (key.value,)
                lines[path] = key.start_mark.line + 1
                walk(value, path)

    walk(yaml.compose(text), ())
    return lines


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse `a.b=value` into (['a', 'b'], value); the value is read as YAML (numbers, lists, null)."""
    if "=" not in item:
        raise UserError(f"override '{item}' has no '='; write it as key.sub=value, e.g. train.epochs=2")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _set_path(tree: dict, path: list[str], value) -> None:
    node = tree
    for part in path[:-1]:
        if isinstance(node.get(part), str) and part == "task":
            node[part] = {"name": node[part]}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"override '{'.'.join(path)}': '{part}' is a value, not a section")
    node[path[-1]] = value


def config_class(task_name: str) -> type[Config]:
    """The Config class whose `task` section is task family `task_name`'s own Settings.

    Raises UserError for an unknown family, listing the registry.
    """
    from tasktune.tasks import get_task_class

    return _config_for(get_task_class(task_name).Settings)


@functools.cache
def _config_for(settings: type[TaskSettings]) -> type[Config]:
    return create_model(f"{settings.__name__}Config", __base__=Config, task=(settings, ...))


def _task_name(tree: dict) -> str | None:
    task = tree.get("task")
    return task if isinstance(task, str) else task.get("name") if isinstance(task, dict) else None


def _field_model(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The section class at `path` under `root` (e.g. ('train', 'early_stopping')), None when not a section."""
    model = root
    for part in path:
        ann = getattr(model.model_fields.get(part), "annotation", None)
        ann = getattr(ann, "__origin__", ann) if not isinstance(ann, type) else ann  # SerializeAsAny[...]
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _section_fields(root: type[BaseModel], loc: tuple) -> list[str]:
    """Keys of the section that holds `loc`'s last part."""
    model = _field_model(root, loc[:-1])
    return list(model.model_fields) if model else []


def _explain(root: type[BaseModel], err: ValidationError, source: str, lines: dict, overridden: set) -> str:
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    key = ".".join(loc)
    where = (f"command-line override {key}" if loc in overridden
             else f"{source} line {lines[loc]}" if loc in lines else source)
    if e["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _section_fields(root, loc))
        return f"{where}: unknown key '{key}'{hint}; see `tasktune train --help` for the keys"
    if e["type"] == "missing":
        sub = _section_fields(root, loc + ("",))  # a missing section: name its first required key
        required = [f for f in sub if _field_model(root, loc).model_fields[f].is_required()] if sub else []
        key = f"{key}.{required[0]}" if required else key
        return f"{where}: '{key}' is required; add it to the config or pass {key}=..."
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "value_error" and (len(loc) <= 1 or "moved" in msg or " is now " in msg):
        return f"{where}: {msg}"  # a rule across keys: the message names them
    return f"{where}: '{key}': {msg} (got {e.get('input')!r})"


def config_from_dict(tree: dict, source: str = "config", lines: dict | None = None,
                     overridden: set = frozenset()) -> Config:
    """Validate a config tree with its task family's settings; UserError names the key, line or override."""
    if isinstance(tree.get("task"), str):  # `task: classification` is shorthand for `task: {name: ...}`
        tree = {**tree, "task": {"name": tree["task"]}}
    name = _task_name(tree)
    lines = lines or {}
    if not name:
        raise UserError(f"{source}: 'task.name' is required; add `task: {{name: ...}}` (families: `tasktune tasks`)")
    try:
        root = config_class(name)
    except UserError as exc:
        where = ("command-line override task.name" if ("task", "name") in overridden
                 else f"{source} line {lines[('task', 'name')]}" if ("task", "name") in lines else source)
        raise UserError(f"{where}: {exc}") from None
    try:
        return root.model_validate(tree)
    except ValidationError as err:
        raise UserError(_explain(root, err, source, lines, overridden)) from None


def load_config(path: str | Path | None, overrides: list[str] = (), base: dict | None = None) -> Config:
    """Read a YAML config (or start from `base`), apply `key.sub=value` overrides, validate.

    Raises UserError naming file, line or override and the fix.
    """
    lines: dict = {}
    tree: dict = dict(base or {})
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise UserError(f"config file '{path}' not found; check the path") from None
        try:
            tree = yaml.safe_load(text) or {}
            lines = _yaml_lines(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
        if not isinstance(tree, dict):
            raise UserError(f"{path}: the config must be a mapping of sections (task, model, data, train)")
    overridden = set()
    for item in overrides:
        keys, value = parse_override(item)
        _set_path(tree, keys, value)
        overridden.add(tuple(keys))
    return config_from_dict(tree, source, lines, overridden)


def config_help(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """One line per config key: `train.epochs (default 3.0): Passes over the training data.`"""
    out = []
    for name, field in model.model_fields.items():
        ann = _field_model(model, (name,))
        if ann is TaskSettings:
            continue  # each family's task keys are listed by task_help
        if ann is not None:
            out += config_help(ann, f"{prefix}{name}.")
            continue
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        out.append(f"  {prefix}{name} ({default}): {field.description or ''}")
    return out


def task_help(names: list[str] | None = None) -> list[str]:
    """The `task.*` keys of the named families (all when None), one block per family."""
    from tasktune.tasks import TASKS, get_task_class

    out = []
    for name in names or list(TASKS):
        out.append(f"task: {{name: {name}}} keys:")
        out += [line for line in config_help(get_task_class(name).Settings, "task.") if "task.name " not in line]
    return out


def task_named_in(path: str | None) -> str | None:
    """The task family a YAML config file names, or None (for `train CFG --help`; never raises)."""
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8-sig")) or {}
        return _task_name(tree) if isinstance(tree, dict) else None
    except (OSError, yaml.YAMLError, TypeError):
        return None


def to_yaml(cfg: Config) -> str:
    """The resolved config (every default filled in) as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
