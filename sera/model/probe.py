"""A linear probe inside the classifier: every encoder layer's time mean -> standardise -> linear.

On raw features of speakers it never heard, this plain view (the SUPERB-style probe baseline)
beat the WAP-Transformer + SAP head on its own (whisper-base, RAVDESS: 74.3 against 69.3 UA):
the two look at different things, the head at how frames unfold, the probe at the whole clip's
average of every layer. ``EmotionClassifier`` averages their probabilities once the probe is
fitted. It is fitted in closed form after stage 2 (logistic regression, as the baseline is),
not trained with the network: trained jointly it gained nothing (2026-11-30, before commit 665a18d; bench/results).

The same probe can also be what the head corrects (``model.residual_probe``, ``fit_prior``): fitted
before stage 2 and held fixed, its log-probabilities plus the head's logits are the model's logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

from ..calibrate import fit_temperature

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


def layer_means(feats: Sequence[torch.Tensor]) -> np.ndarray:
    """(N, L, D) from N clips' (L, T, D) features: each layer's frames averaged over time, the probe's
    view of a clip (the probe baseline, ``sera.probe``, reads the same)."""
    return np.stack([f.float().mean(1).numpy() for f in feats])


def logistic_probe(seed: int = 0) -> "Pipeline":
    """The probe's classifier, the SUPERB-style baseline's own: standardised inputs, logistic regression
    with scikit-learn's defaults (C = 1). Inside sera and as the baseline, so that the two are one probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


class LayerMeanProbe(nn.Module):
    def __init__(self, num_layers: int, dim: int, num_classes: int):
        super().__init__()
        n = num_layers * dim
        self.register_buffer("mean", torch.zeros(n))  # standardisation of the (L * D) time means
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("weight", torch.zeros(num_classes, n))
        self.register_buffer("bias", torch.zeros(num_classes))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))  # False until ``fit``: the head alone
        self.is_fitted = False  # the buffer as a Python bool: what forward branches on (torch.export needs one)
        self.register_load_state_dict_post_hook(_read_fitted)

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """feats (B, L, T, D), mask (B, T) -> logits (B, C)."""
        m = mask[:, None, :, None].to(torch.float32)
        x = (feats.float() * m).sum(2) / m.sum(2).clamp_min(1.0)  # (B, L, D): each layer's mean over real frames
        return ((x.flatten(1) - self.mean) / self.scale) @ self.weight.T + self.bias

    @torch.no_grad()
    def fit(self, feats: list[torch.Tensor], labels: np.ndarray, seed: int = 0) -> "LayerMeanProbe":
        """Logistic regression (scikit-learn's defaults, C = 1) on the standardised time means of
        ``feats`` (each (L, T, D)), written into the buffers. A class absent from ``labels`` gets no
        probability."""
        X = layer_means(feats).reshape(len(feats), -1).astype(np.float64)  # (N, L * D)
        self._load(*_fit(X, labels, self.weight.shape[0], seed))
        return self

    @torch.no_grad()
    def fit_prior(self, feats: list[torch.Tensor], labels: np.ndarray, groups: Sequence[str], seed: int = 0,
                  folds: int = 5) -> torch.Tensor:
        """Fit as ``fit``, for the head of ``model.residual_probe`` to correct, and return (N, C) each
        training clip's log-probabilities from a probe fitted without its speaker (``groups``).

        The head learns against these, not against this probe's own view of its training clips: that
        view is near certain (a linear model on thousands of dimensions separates a thousand clips) and
        would leave the head nothing to learn. Out of fold, the probe is as wrong as it is on a speaker
        it never heard. The temperature that calibrates those out-of-fold scores is folded into the
        weights, so that the head corrects a probe that is as sure as it is right."""
        X = layer_means(feats).reshape(len(feats), -1).astype(np.float64)  # (N, L * D)
        C = self.weight.shape[0]
        mean, scale, weight, bias = _fit(X, labels, C, seed)
        oof = ((X - mean) / scale) @ weight.T + bias  # (N, C) as fitted: what stays with one speaker only
        names = np.unique(np.asarray(groups), return_inverse=True)[1]
        if names.max(initial=0) >= 1:  # two speakers at least: each clip scored by a probe without its speaker
            from sklearn.model_selection import GroupKFold

            for fit_rows, held in GroupKFold(min(folds, names.max() + 1)).split(X, labels, names):
                m, s, w, b = _fit(X[fit_rows], labels[fit_rows], C, seed)
                oof[held] = ((X[held] - m) / s) @ w.T + b
        oof = torch.as_tensor(oof)  # float64, as fitted
        t = fit_temperature(oof.softmax(-1).numpy(), labels)
        self._load(mean, scale, weight / t, bias / t)
        return log_prior((oof / t).float())

    def _load(self, mean: np.ndarray, scale: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean)), self.scale.copy_(torch.as_tensor(scale))
        self.weight.copy_(torch.as_tensor(weight)), self.bias.copy_(torch.as_tensor(bias))
        self.fitted.fill_(True)
        self.is_fitted = True


def log_prior(logits: torch.Tensor) -> torch.Tensor:
    """(B, C) a probe's logits as the log-probabilities a residual head adds to, floored: a class the probe
    never saw (-1e4) stays within a head's reach."""
    return logits.log_softmax(-1).clamp_min(-30.0)


def _fit(X: np.ndarray, labels: np.ndarray, num_classes: int, seed: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Standardisation (L * D,) x 2 and logistic regression (C, L * D), (C,) of (N, L * D) time means; a class
    absent from ``labels`` gets a bias of -1e4 (no probability)."""
    classes = np.unique(labels)
    pipe = logistic_probe(seed)
    if len(classes) == 1:  # nothing to tell apart (a tiny training set): the one class seen
        scaler = pipe[0].fit(X)
        coef, intercept = np.zeros((1, X.shape[1])), np.zeros(1)
    else:
        pipe.fit(X, labels)
        scaler, coef, intercept = pipe[0], pipe[-1].coef_, pipe[-1].intercept_
    if len(classes) == 2:  # scikit-learn keeps one row for two classes: logits (0, z) give sigmoid(z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = np.zeros((num_classes, X.shape[1]))
    bias = np.full(num_classes, -1e4)
    weight[classes], bias[classes] = coef, intercept
    return scaler.mean_, scaler.scale_, weight, bias


def _read_fitted(module: LayerMeanProbe, incompatible_keys: object) -> None:
    module.is_fitted = bool(module.fitted)
