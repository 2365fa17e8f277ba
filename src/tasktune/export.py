"""`tasktune export RUN --out DIR [--merge-lora]`: a self-contained model folder from a run.

With --merge-lora a LoRA run becomes a plain transformers folder (adapter folded into the base
weights) that loads without peft and gives the same outputs; best/tasktune.json travels along, so
`tasktune eval --model DIR` and other tools can use it.

Example: export_run("runs/x", "exported/x", merge_lora=True)
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from tasktune.atomic import write_json
from tasktune.errors import UserError
from tasktune.models.peft_adapters import is_adapter, merge

log = logging.getLogger("tasktune")


def export_run(run: str, out: str, merge_lora: bool = False, overwrite: bool = False) -> dict:
    """Write the run's best model to `out` (merged when asked); returns what was written."""
    from tasktune.run import load_run

    task, cfg, state, best = load_run(run)
    target = Path(out)
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise UserError(f"export folder '{out}' is not empty; pass --overwrite or choose another --out")
    adapter = is_adapter(best)
    if adapter and not merge_lora:
        raise UserError(f"run '{run}' holds a LoRA adapter; pass --merge-lora to export a standalone model")
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if adapter:
        # Merge into a full-precision base: LoRA weights cannot be folded into 4/8-bit ones.
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"quantization": None})})
        model, tok = task.build_model(str(best), cfg, state, for_training=False)
        merged = merge(model)
        merged.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
    else:
        shutil.copytree(best, tmp)
    meta = json.loads((best / "tasktune.json").read_text(encoding="utf-8"))
    write_json(tmp / "tasktune.json", {**meta, "exported_from": str(Path(run).resolve()),
                                       "merged_lora": adapter})
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    log.info("exported %s -> %s%s", best, target, " (LoRA merged)" if adapter else "")
    return {"out": str(target), "merged_lora": adapter}
