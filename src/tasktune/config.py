"""Typed run config: one YAML file, grouped by concern, with dotted command-line overrides.

Sections: `task`, `model`, `data`, `train`, `output_dir`. Every field's description is also the
`tasktune train --help` text. Relative paths are relative to the directory tasktune runs in.

Example:
    cfg = load_config("cfg.yaml", ["train.epochs=2", "output_dir=runs/x"])
    cfg.train.epochs  # 2.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasktune.errors import UserError, did_you_mean


class Section(BaseModel):
    # Unknown keys are errors (with a "did you mean"), never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Section):
    name: str = Field("classification", description="Task family: one of `tasktune tasks`, e.g. classification.")
    labels: list[str] | None = Field(
        None, description="Label set in a fixed order; inferred (sorted) from the training data when absent."
    )

    prompt: str | None = Field(
        None, description="label_scoring prompt with {text}, e.g. '评论：{text}\\n情感（正面或负面）：'."
    )
    verbalizer: dict[str, str | list[str]] | None = Field(
        None, description="label_scoring: label -> word (or list of words) the LM should say, e.g. {positive: 正面}."
    )
    label_score: Literal["sum", "mean"] = Field(
        "sum", description="label_scoring: a word's score is the sum or mean of its tokens' log-probabilities."
    )

    # extractive_qa
    doc_stride: int = Field(64, gt=0, description="extractive_qa: tokens shared by consecutive windows of a long context.")
    max_answer_tokens: int = Field(64, gt=0, description="extractive_qa: longest answer span considered, in tokens.")
    n_best: int = Field(5, gt=0, description="extractive_qa: candidate answers kept per question in predictions.")
    null_threshold: float = Field(
        0.0, description="extractive_qa: answer only when best span score - null score > this; "
        "`tasktune eval RUN --tune-null-threshold` fits it.")
    field_thresholds: dict[str, float] = Field(
        default_factory=dict, description="extractive_qa: null threshold per field, e.g. {title: 1.5}.")
    metric_language: Literal["auto", "zh", "en"] = Field(
        "auto", description="extractive_qa: EM/F1 rules: zh = CMRC 2018 (characters), en = SQuAD (words), "
        "auto = zh when the contexts are mostly Chinese.")
    questions: dict[str, str] | None = Field(
        None, description="extractive_qa: field -> question for predicting on records; default: the training "
        "data's questions per field.")
    short_field_chars: int = Field(4, gt=0, description="extractive_qa: answers of at most this many characters are 'short'.")
    short_field_weight: float = Field(
        1.0, ge=1.0, description="extractive_qa: loss weight of samples with a short answer (1 = off).")
    short_field_boost: float = Field(
        0.0, ge=0.0, description="extractive_qa: adds boost / answer characters to each answer's loss weight (0 = off).")
    null_margin: float = Field(
        0.0, ge=0.0, description="extractive_qa: margin by which the null score should beat every span on a "
        "no-answer sample, and lose to the gold span on an answered one.")
    null_margin_weight: float = Field(
        0.0, ge=0.0, description="extractive_qa: weight of that margin loss (0 = off). Misses answers: lower the "
        "margin; false answers: raise it.")

    @field_validator("verbalizer", mode="before")
    @classmethod
    def _keys_as_text(cls, v):
        return None if v is None else {str(k): w for k, w in v.items()}

    @field_validator("labels", mode="before")
    @classmethod
    def _labels_as_text(cls, v):
        # YAML reads 0/1 labels as ints; data files give text: compare both as text.
        return None if v is None else [str(x) for x in v]


class LoraSettings(Section):
    r: int = Field(8, gt=0, description="LoRA rank.")
    alpha: float = Field(16, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] | str = Field(
        "all-linear", description="Module names to adapt, or 'all-linear' (every linear layer but the output head)."
    )
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
    method: Literal["head", "label_scoring"] = Field(
        "head", description="classification: a new head on the backbone, or a causal LM scoring label words."
    )

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
    lr_scheduler: str = Field("linear", description="Schedule after warmup: linear, cosine, constant, ...")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Fraction of steps spent warming up the learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the task's loss.")
    class_weights: Literal["balanced"] | dict[str, float] | None = Field(
        None, description="Loss weight per label: 'balanced' (inverse frequency) or {label: weight}."
    )
    seed: int = Field(42, description="Seed for weights init, data order and the train/eval split.")
    bf16: Literal["auto"] | bool = Field(
        "auto", description="bfloat16 autocast (mixed precision; trainable weights stay fp32). auto: on where bf16 is "
        "fast (GPUs with bf16, CPUs with bf16 units: a short probe decides); true: always; false: never.")
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
    resume: Literal["auto", "never"] = Field(
        "auto", description="auto: an unfinished run folder continues from its newest complete checkpoint."
    )
    report_to: list[str] = Field(default_factory=list, description="Trackers: tensorboard, wandb, mlflow.")

    @field_validator("best_metric")
    @classmethod
    def _eval_prefix(cls, v):
        return v if v.startswith("eval_") else f"eval_{v}"


class BaselineConfig(Section):
    model: str | None = Field(None, description="Model for the zero-shot baseline; default: the run's base model.")
    after_training: bool = Field(False, description="Evaluate the baselines right after training and print them.")


class Config(Section):
    task: TaskConfig = Field(default_factory=TaskConfig)
    model: ModelConfig
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    output_dir: str = Field("runs/default", description="The run folder.")

    @model_validator(mode="after")
    def _label_scoring_needs_prompt(self):
        if self.model.method == "label_scoring":
            if not self.task.prompt or "{text}" not in self.task.prompt:
                raise ValueError("model.method label_scoring needs task.prompt containing {text}")
            if not self.task.verbalizer:
                raise ValueError("model.method label_scoring needs task.verbalizer (label -> word)")
        return self

    @model_validator(mode="after")
    def _windows_fit(self):
        if self.task.name == "extractive_qa" and self.task.doc_stride >= self.model.max_length // 2:
            raise ValueError(f"task.doc_stride {self.task.doc_stride} must be below half of model.max_length "
                             f"{self.model.max_length} (windows hold the question too); e.g. "
                             f"task.doc_stride={max(1, self.model.max_length // 4)}")
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


def _field_model(path: tuple) -> type[BaseModel] | None:
    """The section class at `path` (e.g. ('train', 'early_stopping')), None when it is not a section."""
    model: type[BaseModel] = Config
    for part in path:
        ann = getattr(model.model_fields.get(part), "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return None
        model = ann
    return model


def _section_fields(loc: tuple) -> list[str]:
    """Keys of the section that holds `loc`'s last part."""
    model = _field_model(loc[:-1])
    return list(model.model_fields) if model else []


def _explain(err: ValidationError, source: str, lines: dict, overridden: set) -> str:
    e = err.errors()[0]
    loc = tuple(str(p) for p in e["loc"])
    key = ".".join(loc)
    where = (f"command-line override {key}" if loc in overridden
             else f"{source} line {lines[loc]}" if loc in lines else source)
    if e["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _section_fields(loc))
        return f"{where}: unknown key '{key}'{hint}; see `tasktune train --help` for the keys"
    if e["type"] == "missing":
        sub = _section_fields(loc + ("",))  # a missing section: name its first required key
        required = [f for f in sub if getattr(_field_model(loc), "model_fields")[f].is_required()] if sub else []
        key = f"{key}.{required[0]}" if required else key
        return f"{where}: '{key}' is required; add it to the config or pass {key}=..."
    msg = e["msg"].removeprefix("Value error, ")
    if len(loc) <= 1 and e["type"] == "value_error":  # a rule across keys: the message names them
        return f"{where}: {msg}"
    return f"{where}: '{key}': {msg} (got {e.get('input')!r})"


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
    try:
        return Config.model_validate(tree)
    except ValidationError as err:
        raise UserError(_explain(err, source, lines, overridden)) from None


def config_help(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """One line per config key: `train.epochs (default 3.0): Passes over the training data.`"""
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += config_help(ann, f"{prefix}{name}.")
            continue
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        out.append(f"  {prefix}{name} ({default}): {field.description or ''}")
    return out


def to_yaml(cfg: Config) -> str:
    """The resolved config (every default filled in) as YAML."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
