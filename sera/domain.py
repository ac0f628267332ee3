"""Out of domain: a clip unlike anything the model was trained on (a tone, music, heavy noise, another
corpus's room and microphone) gets a flag instead of a confident label.

How far a clip's layer means (every encoder layer's time mean, the probe's view) lie from the
training clips' is their mean squared z-score over every layer and feature, about 1 for a training
clip. How far is too far is learnt from the training speakers themselves: each speaker's clips are
measured against the statistics of the other speakers, and the threshold is a high quantile of
those distances, so a clip farther than nearly every unseen speaker's clip is out of domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .calibrate import domain_distance
from .features import Stats
from .model.probe import layer_means


@dataclass
class DomainCheck:
    """How far a clip lies from the training clips, and how far is too far."""

    stats: Stats  # (L, D) mean and std of the training clips' layer means
    threshold: float  # a distance beyond this is out of domain

    @classmethod
    def fit(cls, feats: Sequence[torch.Tensor], speakers: Sequence[str], quantile: float = 0.99) -> "DomainCheck":
        """From training clips' (L, T, D) features: their statistics, and the threshold at ``quantile`` of the
        distances of each speaker's clips to the statistics of the other speakers (one speaker alone: its own)."""
        X = layer_means(feats).astype(np.float64)  # (N, L, D)
        speakers = np.asarray(speakers)
        n, total, squares = len(X), X.sum(0), (X ** 2).sum(0)
        held_out = []
        for s in np.unique(speakers):
            rows = speakers == s
            m = n - rows.sum()
            if m < 2:  # nothing else to compare with
                continue
            mean = (total - X[rows].sum(0)) / m
            std = np.sqrt(np.clip((squares - (X[rows] ** 2).sum(0)) / m - mean ** 2, 0, None)) + 1e-3
            held_out.append(domain_distance(X[rows], mean, std))
        mean = total / n
        std = np.sqrt(np.clip(squares / n - mean ** 2, 0, None)) + 1e-3
        dist = np.concatenate(held_out) if held_out else domain_distance(X, mean, std)
        stats = Stats(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))
        return cls(stats, float(np.quantile(dist, quantile)))

    def distance(self, feats: torch.Tensor) -> float:
        """A clip's (L, T, D) features -> its distance (1 is typical of the training clips themselves)."""
        x = layer_means([feats]).astype(np.float64)  # (1, L, D), as ``fit`` reads the training clips
        return float(domain_distance(x, self.stats.mean.double().numpy(), self.stats.std.double().numpy())[0])
