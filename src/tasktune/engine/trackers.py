"""train.report_to: the experiment trackers transformers' Trainer can log to, checked before training.

Example: check_trackers(["tensorboard"])   # UserError when tensorboard is not installed
"""

from __future__ import annotations

from tasktune.errors import UserError

# train.report_to names -> the module each needs (transformers' integrations import these).
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml",
            "clearml": "clearml", "dagshub": "dagshub", "dvclive": "dvclive", "neptune": "neptune",
            "codecarbon": "codecarbon", "swanlab": "swanlab", "trackio": "trackio", "azure_ml": "azureml"}


def check_trackers(names: list[str]) -> None:
    """UserError for a train.report_to tracker that is unknown or not installed (found before training
    starts, instead of a traceback when the Trainer builds its callbacks)."""
    import importlib.util

    from tasktune.errors import did_you_mean

    for name in names:
        if name == "all":
            continue
        if name not in TRACKERS:
            raise UserError(f"train.report_to: unknown tracker '{name}'{did_you_mean(name, TRACKERS)}; "
                            f"available: {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None and not (
                name == "tensorboard" and importlib.util.find_spec("tensorboardX")):
            raise UserError(f"train.report_to: {name} is not installed; pip install {TRACKERS[name]}, or remove "
                            "it from train.report_to")
