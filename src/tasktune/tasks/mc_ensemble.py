"""Ensembles of multiple-choice runs: a weighted average of their option probabilities.

Weights are non-negative and sum to 1 (a softmax of free parameters), fitted by L-BFGS (scipy) to
minimise the log loss of the gold options on labelled rows. `cross_fit` reports every member and
the blend on folds the weights never saw. An ensemble is saved as a run whose state names its
members and weights; the multiple-choice task then predicts by running each member and blending.

Example:
    weights = fit_weights([probs_a, probs_b], gold)          # e.g. [0.7, 0.3]
    blended = blend([probs_a, probs_b], weights)
"""

from __future__ import annotations

import json
from pathlib import Path


def fit_weights(member_probs: list[list[list[float]]], gold: list[int]) -> list[float]:
    """Simplex weights minimising the mean negative log-likelihood of `gold` under the blended probabilities.

    `member_probs[m][i]` is member m's probability list over row i's options.
    """
    import numpy as np
    from scipy.optimize import minimize

    rows = len(gold)
    picked = np.array([[member[i][gold[i]] for i in range(rows)] for member in member_probs])   # (members, rows)

    def loss(theta):
        w = np.exp(theta - theta.max())
        w /= w.sum()
        mix = w @ picked
        grad_w = -(picked / np.maximum(mix, 1e-12)).mean(1)          # d loss / d w
        grad_theta = w * (grad_w - (w * grad_w).sum())               # through the softmax
        return -np.log(np.maximum(mix, 1e-12)).mean(), grad_theta

    found = minimize(loss, np.zeros(len(member_probs)), jac=True, method="L-BFGS-B")
    w = np.exp(found.x - found.x.max())
    return (w / w.sum()).round(6).tolist()


def blend(member_probs: list[list[list[float]]], weights: list[float]) -> list[list[float]]:
    """Row-wise weighted average of the members' option probabilities."""
    return [[sum(w * member[i][j] for w, member in zip(weights, member_probs)) for j in range(len(member_probs[0][i]))]
            for i in range(len(member_probs[0]))]


def cross_fit(member_probs: list[list[list[float]]], gold: list[int], folds: int = 2, seed: int = 0):
    """(blended probabilities of every row from weights fitted on the other folds, weights per fold)."""
    import random

    order = list(range(len(gold)))
    random.Random(seed).shuffle(order)
    fold_of = {i: k % folds for k, i in enumerate(order)}
    out: list = [None] * len(gold)
    fitted = []
    for f in range(folds):
        fit = [i for i in range(len(gold)) if fold_of[i] != f]
        weights = fit_weights([[m[i] for i in fit] for m in member_probs], [gold[i] for i in fit])
        fitted.append(weights)
        held = [i for i in range(len(gold)) if fold_of[i] == f]
        for i, probs in zip(held, blend([[m[i] for i in held] for m in member_probs], weights)):
            out[i] = probs
    return out, fitted


class Members:
    """The loaded member runs of an ensemble run: (task, config, state, model, tokenizer) each."""

    def __init__(self, runs: list[str]):
        from tasktune.config import config_from_dict
        from tasktune.models.loading import to_device
        from tasktune.tasks.multiple_choice import MultipleChoice

        self.members = []
        for run in runs:
            meta_path = Path(run) / "best" / "tasktune.json"
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            cfg = config_from_dict(meta["config"], str(meta_path))
            task = MultipleChoice()
            model, tok = task.build_model(str(meta_path.parent), cfg, meta["state"], for_training=False)
            self.members.append((task, cfg, meta["state"], to_device(model), tok))

    def to(self, device):  # the members were moved when loaded
        return self
