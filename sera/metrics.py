"""Scores of predictions against labels: UA (mean per-class recall, the field's headline for
imbalanced emotion classes), WA (accuracy), macro-F1, and how well probabilities are calibrated.

Kept apart from training and evaluation so that the probe, the bench and ``Predictor``'s
calibration read one definition without importing either."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score


def unweighted_accuracy(y: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    recalls = [float((pred[y == c] == c).mean()) for c in range(num_classes) if (y == c).any()]
    return float(np.mean(recalls)) if recalls else 0.0


def metrics(y: np.ndarray, pred: np.ndarray, num_classes: int) -> dict:
    return {
        "ua": unweighted_accuracy(y, pred, num_classes),
        "wa": float((y == pred).mean()) if len(y) else 0.0,
        "f1": float(f1_score(y, pred, labels=list(range(num_classes)), average="macro", zero_division=0)),
        "confusion": confusion_matrix(y, pred, labels=list(range(num_classes))).tolist(),
    }


def corpus_metrics(y: np.ndarray, pred: np.ndarray, num_classes: int, sources: np.ndarray) -> dict:
    """UA / WA / macro-F1 of each corpus's test clips of a model trained on several: over the classes
    that corpus has (a RAVDESS clip called "boredom" is simply wrong), so that its figures compare with
    a model trained on it alone."""
    out = {}
    for c in sorted(set(sources.tolist())):
        yc, pc = y[sources == c], pred[sources == c]
        out[c] = {"ua": unweighted_accuracy(yc, pc, num_classes), "wa": float((yc == pc).mean()),
                  "f1": float(f1_score(yc, pc, labels=sorted(set(yc.tolist())), average="macro", zero_division=0))}
    return out


def reliability(y: np.ndarray, probs: np.ndarray, bins: int = 10) -> dict:
    """Top-class confidence against accuracy in ``bins`` equal-width confidence bins, and the expected
    calibration error (ECE: the bins' |accuracy - confidence| weighted by their share of clips).

    A model that says 0.9 should be right 9 times in 10; ECE is how far off it is on average."""
    probs = np.asarray(probs, dtype=np.float64)
    conf, pred = probs.max(1), probs.argmax(1)
    right = (pred == np.asarray(y)).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)  # bin i holds (edges[i], edges[i + 1]]
    count = np.bincount(which, minlength=bins)
    acc = np.bincount(which, right, minlength=bins) / np.maximum(count, 1)
    mean_conf = np.bincount(which, conf, minlength=bins) / np.maximum(count, 1)
    ece = float((count * np.abs(acc - mean_conf)).sum() / max(1, len(conf)))
    return {"ece": ece, "edges": edges.tolist(), "count": count.tolist(), "accuracy": acc.tolist(),
            "confidence": mean_conf.tolist()}
