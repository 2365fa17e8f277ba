"""Classification metrics: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix.

Example:
    classification_metrics([0, 1, 1], [0, 1, 0], ["neg", "pos"])["accuracy"]  # 0.666...
"""

from __future__ import annotations


def classification_metrics(gold: list[int], pred: list[int], labels: list[str]) -> dict:
    """Metrics for label indices `gold` vs `pred` over `labels` (index -> name).

    Returns accuracy, macro_f1, per_class {name: {precision, recall, f1, support}} and
    confusion_matrix (rows = gold, columns = predicted, in `labels` order).
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(gold, pred, labels=idx, zero_division=0)
    correct = sum(int(g == q) for g, q in zip(gold, pred))
    return {
        "accuracy": correct / len(gold) if gold else 0.0,
        "macro_f1": float(f.mean()) if len(f) else 0.0,
        "per_class": {
            name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, name in enumerate(labels)
        },
        "confusion_matrix": confusion_matrix(gold, pred, labels=idx).tolist(),
    }
