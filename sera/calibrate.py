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


def domain_distance(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(N,) mean squared z-score of N clips' (N, L, D) layer means against the training clips' statistics
    (``sera.domain``): about 1 for a training clip."""
    return (((np.asarray(x, dtype=np.float64) - mean) / std) ** 2).reshape(len(x), -1).mean(1)


def flags(probabilities: np.ndarray, distance: float | None, uncertain_below: float,
          threshold: float | None) -> list[str]:
    """Reasons not to trust a clip's label: "uncertain" (no class's probability reaches ``uncertain_below``),
    "out of domain" (its ``distance`` beyond the training speakers' ``threshold``). Both routes call this."""
    return ((["uncertain"] if float(np.max(probabilities)) < uncertain_below else [])
            + (["out of domain"] if distance is not None and threshold is not None and distance > threshold else []))


def warning(flagged: list[str], distance: float | None, top: float) -> str:
    """One sentence for a user when a prediction is flagged, else ""."""
    why = []
    if "out of domain" in flagged:
        why.append(f"the audio is unlike the training clips (distance {distance:.1f}: another microphone, room, "
                   "language, or a sound that is not speech)")
    if "uncertain" in flagged:
        why.append(f"no emotion is clearly ahead (top probability {top:.2f})")
    text = "; ".join(why)
    return f"{text[:1].upper()}{text[1:]}: treat the label as a guess." if why else ""
