"""Build TrainingArguments from a tasktune config and run transformers.Trainer with our callbacks.

Everything a Trainer already does (accumulation, schedules, mixed precision, DDP through
accelerate, checkpoint/resume, trackers) is left to it; this module only translates config.

Example:
    trainer = build_trainer(task, cfg, model, tok, train_feats, eval_feats, state, run_dir, history)
    trainer.train(resume_from_checkpoint=None)
"""

from __future__ import annotations

import logging

from tasktune.engine.callbacks import (CompleteMarker, EarlyStopping, HistoryCallback, QuietProgress,
                                       greater_is_better)
from tasktune.errors import UserError

log = logging.getLogger("tasktune")


def distributed_state():
    """The process group of this run (one process unless launched by torchrun / accelerate launch).

    On a machine with no GPU, accelerate only forms a multi-process CPU group (gloo) when asked
    for the CPU explicitly, so say so; the Trainer then gets the same answer through use_cpu.
    """
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def accumulation_steps(effective: int | None, per_device: int, world_size: int) -> int:
    """Gradient accumulation giving `effective` examples per optimizer step; 1 when effective is None.

    Example: accumulation_steps(32, 8, 2) -> 2
    """
    if effective is None:
        return 1
    per_step = per_device * world_size
    if effective % per_step:
        raise UserError(f"train.effective_batch_size {effective} is not a multiple of train.batch_size "
                        f"{per_device} x {world_size} process(es) = {per_step}; choose a multiple, e.g. "
                        f"{max(per_step, effective // per_step * per_step)}")
    return effective // per_step


def training_arguments(cfg, run_dir: str, has_eval: bool, task=None):
    """TrainingArguments for `cfg`, writing checkpoints into `run_dir`."""
    import torch
    from transformers import TrainingArguments

    from tasktune.precision import decide_bf16

    t = cfg.train
    precision = decide_bf16(t.bf16)
    log.info("precision: %s (train.bf16=%s: %s)", "bf16 autocast" if precision.bf16 else "fp32",
             precision.setting, precision.reason)
    world = distributed_state().num_processes
    accum = accumulation_steps(t.effective_batch_size, t.batch_size, world)
    if t.sampling == "batch_rebalance" and accum == 1:
        raise UserError("train.sampling=batch_rebalance sorts each optimizer step's rows into several forward "
                        "passes: set train.effective_batch_size to a multiple of train.batch_size above it "
                        f"(e.g. {t.batch_size * world * 4}), or train.sampling=random")
    log.info("batch: %d per device x %d process(es) x %d accumulation = %d per optimizer step",
             t.batch_size, world, accum, t.batch_size * world * accum)
    interval = {"eval_strategy": "steps", "eval_steps": t.eval_steps} if t.eval_steps else {"eval_strategy": "epoch"}
    if not has_eval:
        interval = {"eval_strategy": "no"}
    save = {"save_strategy": "steps", "save_steps": t.eval_steps} if t.eval_steps else {"save_strategy": "epoch"}
    try:
        return TrainingArguments(
            output_dir=run_dir, num_train_epochs=t.epochs, max_steps=t.max_steps,
            per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.eval_batch_size or t.batch_size,
            gradient_accumulation_steps=accum, learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
            warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay, seed=t.seed, bf16=precision.bf16,
            logging_steps=t.logging_steps, save_total_limit=t.save_total_limit,
            load_best_model_at_end=has_eval, metric_for_best_model=t.best_metric if has_eval else None,
            greater_is_better=greater_is_better(t.best_metric, task), dataloader_num_workers=t.num_workers,
            report_to=t.report_to or "none", restore_callback_states_from_checkpoint=True,
            remove_unused_columns=False, disable_tqdm=False, train_sampling_strategy=t.sampling,
            use_cpu=not torch.cuda.is_available(), **interval, **save,
            **sharding_kwargs(t),
        )
    except ValueError as exc:  # a combination TrainingArguments refuses: name it, no traceback
        raise UserError(f"training arguments: {str(exc).splitlines()[0]}; change the train.* settings") from None


def sharding_kwargs(t) -> dict:
    """TrainingArguments kwargs for train.fsdp / train.fsdp_config / train.deepspeed (only those set)."""
    import importlib.util
    from pathlib import Path

    import torch

    if t.fsdp and not torch.cuda.is_available():
        # Observed with transformers 5.23 on CPUs: the run trains as plain DDP, nothing is sharded.
        raise UserError("train.fsdp shards over GPUs; this machine has none. Remove train.fsdp (several CPU "
                        "processes train with DDP)")
    if t.deepspeed:
        if importlib.util.find_spec("deepspeed") is None:
            raise UserError("train.deepspeed needs the deepspeed package: pip install deepspeed (or remove the setting)")
        if not Path(t.deepspeed).is_file():
            raise UserError(f"train.deepspeed: config file '{t.deepspeed}' not found; give a DeepSpeed JSON file")
    found = {"fsdp": t.fsdp or None, "fsdp_config": t.fsdp_config, "deepspeed": t.deepspeed}
    return {k: v for k, v in found.items() if v}


def head_parameter_groups(optimizer, model, heads: list[str], lr: float) -> tuple[int, list[str]]:
    """Move the parameters of modules named in `heads` into their own param groups at `lr`; returns how many,
    and which of `heads` the model has (settings add some heads, e.g. the span head's pair term).

    Called on a fresh optimizer (no state yet). Names match a module at any depth, also inside
    peft's wrappers (`...span_head.modules_to_save.default.weight`).
    Example: head_parameter_groups(opt, model, ["span_head", "pair_head"], 3e-3) -> (2, ["span_head"])
    """
    owner = {id(p): next((h for h in heads if f".{h}." in f".{n}"), None) for n, p in model.named_parameters()
             if p.requires_grad}
    ids = {i for i, h in owner.items() if h is not None}
    moved = 0
    for group in list(optimizer.param_groups):
        mine = [p for p in group["params"] if id(p) in ids]
        if mine:
            group["params"] = [p for p in group["params"] if id(p) not in ids]
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": mine,
                                       "lr": lr, "initial_lr": lr})
            moved += len(mine)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
    return moved, [h for h in heads if h in owner.values()]


def task_metrics(task, model, tokenizer, rows, cfg, state) -> dict:
    """The task's scalar metrics of `model` on labelled `rows` (predict + aggregate), as an eval reports them."""
    preds = task.predict(model, tokenizer, rows, cfg, state, cfg.train.eval_batch_size or cfg.train.batch_size)
    for p, r in zip(preds, rows):
        p["gold"] = task.gold(r)
    return {k: v for k, v in task.aggregate(task.row_scores(preds, state), state).items()
            if isinstance(v, (int, float))}


def build_trainer(task, cfg, model, tokenizer, train_feats, eval_feats, state, run_dir, history, extra=(),
                  eval_rows=()):
    """A Trainer wired with the task's collator, loss and metrics and tasktune's callbacks."""
    if cfg.train.head_learning_rate is not None and not task.head_modules(cfg):
        log.warning("train.head_learning_rate is ignored: this task and method add no head to the model")
    args = training_arguments(cfg, str(run_dir), has_eval=bool(eval_feats), task=task)
    callbacks = [HistoryCallback(run_dir, cfg.train.curves_every, history), CompleteMarker(), *extra]
    es = cfg.train.early_stopping
    if es.patience:
        if not eval_feats:
            raise UserError("train.early_stopping needs evaluation during training: set data.eval (a file or a "
                            "fraction) and keep train.eval_during_training true")
        metric = es.metric or cfg.train.best_metric
        callbacks.append(EarlyStopping(metric, es.patience, es.min_delta, greater_is_better(metric, task)))
    from tasktune.engine.task_trainer import TaskTrainer

    trainer = TaskTrainer(
        model=model, args=args, data_collator=task.collator(tokenizer, cfg, state), train_dataset=train_feats,
        eval_dataset=eval_feats or None, processing_class=tokenizer, callbacks=callbacks,
        task=task, cfg=cfg, state=state, eval_rows=_eval_sample(eval_rows, cfg),
    )
    from transformers.trainer_callback import ProgressCallback

    if trainer.pop_callback(ProgressCallback):
        trainer.add_callback(QuietProgress())
    return trainer


def _eval_sample(rows, cfg) -> list[dict]:
    """The eval rows scored by the task's metrics during training: all, or train.eval_sample of them (seeded)."""
    from tasktune.data.split import sample_rows

    return sample_rows(list(rows), cfg.train.eval_sample, cfg.train.seed)
