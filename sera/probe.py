"""The linear probe: frozen features, mean over time, logistic regression (the SUPERB / S3PRL
style baseline). It tells how much a representation already holds before anything is trained
on frames, and is what the adapter has to beat.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .data import Fold
from .evaluate import metrics
from .features import FeatureSet


def utterance_embeddings(fs: FeatureSet) -> np.ndarray:
    """(N, L, D): each layer's frames averaged over time."""
    return np.stack([f.float().mean(1).numpy() for f in fs.feats])


def probe_predictions(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class ids predicted for ``test`` by a standardised logistic regression fitted on ``train``."""
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    return clf.fit(X[train], y[train]).predict(X[test])


def probe_cv(X: np.ndarray, fs: FeatureSet, folds: list[Fold], num_classes: int, seed: int = 0) -> dict:
    """UA / WA / macro-F1 of the probe over ``folds`` (pooled predictions), and UA per fold.

    ``X`` is (N, F): one row per utterance of ``fs``, e.g. ``utterance_embeddings(fs)[:, layer]``
    or all layers flattened."""
    y = fs.labels.numpy()
    pred = np.full(len(y), -1)
    per_fold = []
    for fold in folds:
        test = np.array([u.id in fold.test_ids for u in fs.utts])
        pred[test] = probe_predictions(X, y, ~test, test, seed)
        per_fold.append(metrics(y[test], pred[test], num_classes)["ua"])
    scored = pred >= 0
    return {**metrics(y[scored], pred[scored], num_classes), "per_fold_ua": per_fold}


def as_matrix(embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, L, D) -> (N, L * D): all layers side by side."""
    return np.asarray(embeddings).reshape(len(embeddings), -1)
