"""Knowing when it does not know: a temperature that makes the probabilities mean what they say,
and a domain check that tells a clip unlike anything the model was trained on.

A classifier trained on ~1k acted clips is overconfident on a stranger's voice, and a softmax
gives a confident answer to a tone or a fan as readily as to speech. Temperature scaling (Guo et
al. 2017) fits one number on validation speakers: the probabilities ``p ** (1 / T)``, renormalised,
that best predict their labels. It works on probabilities, not logits, so the head averaged with
the probe is scaled as one model. The domain check measures how far a clip's layer means lie from
the training clips' (mean squared z-score over every layer and feature) and compares it with how
far the clips of training speakers lie when their own speaker is left out: a clip farther than
nearly all unseen speakers' clips is out of domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .features import Stats
from .model.probe import layer_means

TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 481))  # the search grid, 1.3% apart


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """(N, C) probabilities sharpened (T < 1) or softened (T > 1): softmax(log p / T)."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)) / temperature
    logp -= logp.max(-1, keepdims=True)
    p = np.exp(logp)
    return p / p.sum(-1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The T of ``TEMPERATURES`` that minimises the negative log-likelihood of ``y`` under ``temper(probs, T)``.
    A grid, not an optimiser: one number, deterministic, and never off into a degenerate T."""
    logp = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0))  # (N, C)
    if not len(logp):
        return 1.0
    z = logp[None] / TEMPERATURES[:, None, None]  # (G, N, C)
    z -= z.max(-1, keepdims=True)
    nll = -(z[:, np.arange(len(y)), np.asarray(y)] - np.log(np.exp(z).sum(-1))).mean(1)  # (G,)
    return float(TEMPERATURES[int(np.argmin(nll))])


def _distances(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return (((X - mean) / std) ** 2).reshape(len(X), -1).mean(1)


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
            held_out.append(_distances(X[rows], mean, std))
        mean = total / n
        std = np.sqrt(np.clip(squares / n - mean ** 2, 0, None)) + 1e-3
        dist = np.concatenate(held_out) if held_out else _distances(X, mean, std)
        stats = Stats(torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32))
        return cls(stats, float(np.quantile(dist, quantile)))

    def distance(self, feats: torch.Tensor) -> float:
        """A clip's (L, T, D) features -> its distance (1 is typical of the training clips themselves)."""
        x = feats.float().mean(1).double().numpy()[None]  # (1, L, D)
        return float(_distances(x, self.stats.mean.double().numpy(), self.stats.std.double().numpy())[0])
