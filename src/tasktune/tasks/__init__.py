"""Task families. Each is one file implementing the `Task` protocol; the registry is a plain dict.

A new family: write `tasks/<name>.py` with a class that has the members of
`tasktune.tasks.protocol.Task` (and its `Settings`, the family's `task:` config section), then add
it to `TASKS` below. Nothing else changes.
"""

from __future__ import annotations

from tasktune.errors import UserError, did_you_mean
from tasktune.tasks.classification import Classification
from tasktune.tasks.extractive_qa import ExtractiveQA
from tasktune.tasks.multiple_choice import MultipleChoice
from tasktune.tasks.retrieval import Retrieval
from tasktune.tasks.sft import SFT

TASKS = {
    "classification": Classification,
    "extractive_qa": ExtractiveQA,
    "retrieval": Retrieval,
    "multiple_choice": MultipleChoice,
    "sft": SFT,
}


def get_task_class(name: str) -> type:
    """The class registered as `name`; unknown names list what is available."""
    if name not in TASKS:
        raise UserError(f"unknown task '{name}'{did_you_mean(name, TASKS)}; available: {', '.join(TASKS)}")
    return TASKS[name]


def get_task(name: str):
    """A fresh task object for `name`; unknown names list what is available."""
    return get_task_class(name)()
