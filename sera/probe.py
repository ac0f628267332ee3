"""The linear probe: frozen features, mean over time, logistic regression (the SUPERB / S3PRL
style baseline). It tells how much a representation already holds before anything is trained
on frames, and is what the adapter has to beat.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Fold
from .evaluate import metrics
from .features import FeatureSet
from .model.probe import layer_means, logistic_probe


def utterance_embeddings(fs: FeatureSet) -> np.ndarray:
    """(N, L, D): each layer's frames averaged over time (what sera's own probe reads)."""
    return layer_means(fs.feats)


def probe_predictions(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class ids predicted for ``test`` by a standardised logistic regression fitted on ``train``."""
    return logistic_probe(seed).fit(X[train], y[train]).predict(X[test])


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


def emobox_predictions(fs: FeatureSet, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0,
                       layer: int = -1, epochs: int = 20) -> np.ndarray:
    """EmoBox's downstream recipe (the benchmark's published figures use it), as one more baseline:
    one layer's frames (the last by default) -> Linear(D, 256) -> ReLU -> masked mean over time ->
    Linear(256, C); Adam, lr 1e-4, batch 32, ``epochs`` epochs, the epoch kept by accuracy on a
    random 20% of the training clips. Each test clip is scored alone (clip protocol).

    sera's cache holds frames already averaged over ``model.frame_stride``; EmoBox reads all 50
    per second, so the ReLU sees averaged frames here."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    idx = np.flatnonzero(train)
    idx = idx[torch.randperm(len(idx), generator=g).numpy()]
    n_val = max(1, len(idx) // 5)
    val, fit = idx[:n_val], idx[n_val:]
    D, C = fs.feats[0].shape[-1], int(y.max()) + 1
    frames = torch.nn.Sequential(torch.nn.Linear(D, 256), torch.nn.ReLU())
    head = torch.nn.Linear(256, C)
    opt = torch.optim.Adam([*frames.parameters(), *head.parameters()], lr=1e-4)
    labels = torch.as_tensor(y)

    def logits(batch: np.ndarray) -> torch.Tensor:
        parts = [fs.feats[i][layer].float() for i in batch]  # each (T_i, D)
        T = max(p.shape[0] for p in parts)
        x = torch.zeros(len(parts), T, D)
        mask = torch.zeros(len(parts), T, 1)
        for b, p in enumerate(parts):
            x[b, : p.shape[0]], mask[b, : p.shape[0]] = p, 1.0
        h = (frames(x) * mask).sum(1) / mask.sum(1)  # (B, 256): masked mean over time
        return head(h)

    @torch.no_grad()
    def predict(rows: np.ndarray) -> np.ndarray:
        return np.concatenate([logits(rows[i : i + 1]).argmax(1).numpy() for i in range(len(rows))]) if len(rows) else \
            np.zeros(0, dtype=np.int64)

    best, best_state = -1.0, None
    for _ in range(epochs):
        order = fit[torch.randperm(len(fit), generator=g).numpy()]
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            loss = torch.nn.functional.cross_entropy(logits(batch), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = float((predict(val) == y[val]).mean())
        if acc > best:
            best, best_state = acc, [{k: v.clone() for k, v in m.state_dict().items()} for m in (frames, head)]
    for m, state in zip((frames, head), best_state):
        m.load_state_dict(state)
    return predict(np.flatnonzero(test))
