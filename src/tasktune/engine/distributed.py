"""Collectives a task's loss needs when training runs on several processes (DDP).

Plain functions that are the identity on one process, so a task (or run.py) calls them unconditionally.

Example (retrieval's in-batch negatives, every process scoring its queries against ALL passages):
    passages, offset = gather_rows(passages)     # (all processes' rows, where this process's rows start)
"""

from __future__ import annotations


def world() -> tuple[int, int]:
    """(process count, this process's rank); (1, 0) outside torch.distributed."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def on_main_process(ps, work):
    """`work()` run by the main process only; its result (picklable) returned on every process. An error raised
    there is raised on every process, so none waits forever. `ps`: accelerate's PartialState.

    Example: splits = on_main_process(ps, lambda: task.before_training(model, tok, splits, cfg, run_dir))
    """
    if ps.num_processes == 1:
        return work()
    from accelerate.utils import broadcast_object_list

    box = [None]
    if ps.is_main_process:
        try:
            box[0] = ("ok", work())
        except Exception as exc:  # noqa: BLE001 - re-raised below, on every process
            box[0] = ("error", exc)
    broadcast_object_list(box)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def gather_rows(tensor):
    """Every process's rows of `tensor` concatenated in rank order, and the index where this process's start.

    Row counts may differ between processes (rows are padded for the collective and the padding removed).
    Differentiable: gradients flow back to the process that owns each row, summed over the processes that
    used it (torch.distributed.nn's all_gather), which is what a loss over the gathered rows needs.
    Example, 2 processes with 3 and 2 rows: rank 1 gets (a (5, d) tensor, 3).
    """
    import torch

    size, rank = world()
    if size == 1:
        return tensor, 0
    import torch.distributed as dist
    from torch.distributed.nn.functional import all_gather

    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    width = max(counts)
    pad = tensor.new_zeros((width - tensor.shape[0], *tensor.shape[1:]))
    parts = all_gather(torch.cat([tensor, pad]))
    rows = torch.cat([part[:c] for part, c in zip(parts, counts)])
    return rows, sum(counts[:rank])
