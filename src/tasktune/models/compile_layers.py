"""`train.compile`: torch.compile each transformer layer of a model in place.

Why per layer, not `torch.compile(model)` (what Trainer's `torch_compile` does):
- the layers of a stack are one code path, so they share one compiled graph: the compile cost is that of
  one or two layers (Gemma alternates sliding and full attention), not of the whole network (gemma-3-270m's
  LoRA step on 2 CPU cores: 63 s per layer against 80 s whole, and 1.07x against 1.04x per step after;
  bench/RESULTS.md);
- the model keeps its module tree: tasks call sub-modules directly (the backbone under a new head,
  `lm_head.logits_at`), which a compiled wrapper around the whole model would bypass;
- the embeddings and heads, with their task-specific indexing, stay eager.
Shapes are compiled dynamic (`dynamic=True`): dynamic padding and packing change the sequence length from
batch to batch, and a graph per length would recompile all run long.
"""

from __future__ import annotations

import logging

from tasktune.models.peft_adapters import layer_stack

log = logging.getLogger("tasktune")


def compile_layers(model, backend: str = "inductor") -> int:
    """Compile every layer of `peft_adapters.layer_stack(model)` in place (`nn.Module.compile`); returns how many.

    The first forward of each layer kind pays the compile (about a minute on 2 CPU cores, logged); later calls run the
    compiled code, forward and backward, with LoRA adapters inside the layers compiled too.
    """
    found = layer_stack(model)
    if found is None:
        log.warning("train.compile: no stack of transformer layers found in %s; running eager",
                    type(model).__name__)
        return 0
    stack = found[1]
    for layer in stack:
        layer.compile(dynamic=True, backend=backend)
    log.info("train.compile: %d %s layers compiled on first use (a one-off cost, about a minute on 2 CPU cores)",
             len(stack), type(stack[0]).__name__)
    return len(stack)
