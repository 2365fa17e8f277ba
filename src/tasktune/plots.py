"""Pictures a run writes: training curves, confusion matrices, length histograms (PNG, atomic).

matplotlib is imported inside each function with the Agg backend, so no display is needed and
commands that draw nothing do not pay for the import.
"""

from __future__ import annotations

from pathlib import Path

from tasktune.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def plot_curves(history: list[dict], path: str | Path) -> None:
    """Train/eval loss, learning rate and eval metrics against the optimizer step."""
    plt = _pyplot()
    train = [h for h in history if "loss" in h]
    evals = [h for h in history if "eval_loss" in h]
    metric_keys = sorted({k for h in evals for k, v in h.items()
                          if k.startswith("eval_") and isinstance(v, (int, float))
                          and k not in ("eval_loss", "eval_runtime", "eval_samples_per_second",
                                        "eval_steps_per_second", "epoch")})
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot([h["step"] for h in train], [h["loss"] for h in train], label="train loss")
    ax.plot([h["step"] for h in evals], [h["eval_loss"] for h in evals], "o-", label="eval loss")
    ax.set(title="loss", xlabel="step")
    ax.legend()
    lr = [h for h in history if "learning_rate" in h]
    axes[1].plot([h["step"] for h in lr], [h["learning_rate"] for h in lr])
    axes[1].set(title="learning rate", xlabel="step")
    for key in metric_keys:
        axes[2].plot([h["step"] for h in evals], [h.get(key) for h in evals], "o-", label=key)
    axes[2].set(title="eval metrics", xlabel="step")
    if metric_keys:
        axes[2].legend()
    _save(plt, fig, path)


def plot_confusion(matrix: list[list[int]], labels: list[str], path: str | Path) -> None:
    """Confusion matrix heat map: rows gold, columns predicted."""
    plt = _pyplot()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(2 + 0.6 * n, 1.6 + 0.6 * n))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(n), yticks=range(n), xticklabels=labels, yticklabels=labels,
           xlabel="predicted", ylabel="gold", title="confusion matrix")
    top = max((max(r) for r in matrix), default=0)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, matrix[i][j], ha="center", va="center",
                    color="white" if matrix[i][j] > top / 2 else "black")
    _save(plt, fig, path)


def plot_histogram(values: list[int], path: str | Path, title: str, marks: dict[str, float] = None) -> None:
    """Histogram of integer values (e.g. token lengths) with labelled vertical marks (percentiles)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(values, bins=min(60, max(5, len(set(values)))))
    for name, x in (marks or {}).items():
        ax.axvline(x, color="red", linestyle="--")
        ax.text(x, ax.get_ylim()[1] * 0.95, f" {name}={x:g}", color="red", va="top")
    ax.set(title=title, xlabel="tokens", ylabel="examples")
    _save(plt, fig, path)
