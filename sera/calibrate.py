"""Probabilities that mean what they say: temperature scaling (Guo et al. 2017).

A classifier trained on ~1k acted clips is overconfident, or underconfident, on a stranger's voice.
One number fitted on validation speakers corrects it: the probabilities ``p ** (1 / T)``,
renormalised, that best predict their labels. It works on probabilities, not logits, so the head
averaged with the probe is scaled as one model, and it never changes a label. numpy alone, so the
ONNX route (no torch) applies it too. What a temperature cannot fix, audio unlike anything the model
was trained on, is ``sera.domain``'s to flag."""

from __future__ import annotations

import numpy as np

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
