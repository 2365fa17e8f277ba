"""tasktune's one Trainer subclass: the task's loss, evaluation and head learning rate on transformers.Trainer.

In a module of its own, imported on first use by `engine/trainer.build_trainer`: importing transformers'
Trainer takes seconds, and the CLI should not pay them for `--help`.

Example: TaskTrainer(model=m, args=training_args, task=task, cfg=cfg, state=state, train_dataset=feats)
"""

from __future__ import annotations

import logging

import torch
from transformers import Trainer

from tasktune.engine.trainer import head_parameter_groups, task_metrics

log = logging.getLogger("tasktune")


class TaskTrainer(Trainer):
    """transformers.Trainer whose loss, evaluation and head learning rate come from the task.

    - compute_loss: the task's sum of item losses over the items (`loss_items`) of the whole
      accumulated batch on every process, so batch 8 x 2 accumulation trains like batch 16 x 1.
    - evaluation: the eval loss from compute_loss, then the task's own predict + metrics on the
      eval rows (main process; broadcast), the same numbers `tasktune eval` reports.
    - create_optimizer: the task's new heads at train.head_learning_rate (Trainer has no
      per-module rate).
    """

    loss_is_scaled_for_ga = True  # compute_loss divides by the whole accumulated batch itself

    def __init__(self, *args, task, cfg, state, eval_rows=(), **kwargs):
        super().__init__(*args, **kwargs)
        # Not `state` / `cfg`: Trainer owns `self.state` (its TrainerState).
        self.task, self.task_cfg, self.task_state, self.eval_rows = task, cfg, state, list(eval_rows)

    def _get_num_items_in_batch(self, batch_samples, device):
        items = torch.tensor(sum(int(b["loss_items"]) for b in batch_samples), device=device)
        if self.args.world_size > 1:
            items = self.accelerator.gather(items).sum()
        return items

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy != "batch_rebalance":
            return super()._get_train_sampler(train_dataset)
        from transformers.trainer_pt_utils import BatchRebalanceSampler

        from tasktune.engine.inference import feature_length

        # Trainer would read lengths from `input_ids`; tasks name their token lists differently (prompt_ids...).
        data = self.train_dataset if train_dataset is None else train_dataset
        world, accum = max(1, self.args.world_size), self.args.gradient_accumulation_steps
        return BatchRebalanceSampler(
            lengths=[feature_length(f) for f in data], effective_batch_size=self.args.train_batch_size * accum * world,
            dp_size=world, grad_accum=accum, seed=self.args.seed, rank=self.args.process_index if world > 1 else 0,
            drop_last=self.args.dataloader_drop_last)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        batch = dict(inputs)
        items = batch.pop("loss_items")
        total = self.task.compute_loss(model, batch, self.task_cfg, self.task_state)
        if num_items_in_batch is None:  # evaluation: this batch's mean
            loss = total / items
        else:  # DDP averages gradients over processes: undo it, the count is global already
            loss = total / num_items_in_batch * self.args.world_size
        return (loss, None) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad(), self.compute_loss_context_manager():
            loss = self.compute_loss(model, inputs)
        return loss.detach(), None, None

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        output = super().evaluation_loop(dataloader, description, True, ignore_keys, metric_key_prefix)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in self._task_metrics().items()})
        return output

    def _task_metrics(self) -> dict:
        from accelerate.utils import broadcast_object_list

        found = [{}]
        if self.eval_rows and self.is_world_process_zero():
            # The unwrapped model: a DDP wrapper would wait for the other processes in its forward.
            model = self.accelerator.unwrap_model(self.model)
            found[0] = task_metrics(self.task, model, self.processing_class, self.eval_rows, self.task_cfg,
                                    self.task_state)
            model.train()
        if self.args.world_size > 1:
            broadcast_object_list(found)
        return found[0]

    def create_optimizer(self, model=None):
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        heads, head_lr = self.task.head_modules(self.task_cfg), self.task_cfg.train.head_learning_rate
        if fresh and heads and head_lr is not None:
            n, present = head_parameter_groups(optimizer, self.model if model is None else model, heads, head_lr)
            log.info("head learning rate %g on %d tensor(s) of %s", head_lr, n, ", ".join(present))
        return optimizer
