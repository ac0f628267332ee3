"""A linear probe inside the classifier: every encoder layer's time mean -> standardise -> linear.

On raw features of speakers it never heard, this plain view (the SUPERB-style probe baseline)
beat the WAP-Transformer + SAP head on its own (whisper-base, RAVDESS: 74.3 against 69.3 UA):
the two look at different things, the head at how frames unfold, the probe at the whole clip's
average of every layer. ``EmotionClassifier`` averages their probabilities once the probe is
fitted. It is fitted in closed form after stage 2 (logistic regression, as the baseline is),
not trained with the network: trained jointly it gained nothing (2026-11-30, before commit 665a18d; bench/results).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn as nn

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
        weight = torch.zeros_like(self.weight)
        bias = torch.full_like(self.bias, -1e4)
        rows = torch.as_tensor(classes, dtype=torch.long)
        weight[rows] = torch.as_tensor(coef, dtype=weight.dtype)
        bias[rows] = torch.as_tensor(intercept, dtype=bias.dtype)
        self.mean.copy_(torch.as_tensor(scaler.mean_)), self.scale.copy_(torch.as_tensor(scaler.scale_))
        self.weight.copy_(weight), self.bias.copy_(bias)
        self.fitted.fill_(True)
        self.is_fitted = True
        return self


def _read_fitted(module: LayerMeanProbe, incompatible_keys: object) -> None:
    module.is_fitted = bool(module.fitted)
