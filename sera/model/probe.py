"""A linear probe inside the classifier: every encoder layer's time mean -> standardise -> linear.

On raw features of speakers it never heard, this plain view (the SUPERB-style probe baseline)
beat the WAP-Transformer + SAP head on its own (whisper-base, RAVDESS: 74.3 against 69.3 UA):
the two look at different things, the head at how frames unfold, the probe at the whole clip's
average of every layer. ``EmotionClassifier`` averages their probabilities once the probe is
fitted. It is fitted in closed form after stage 2 (logistic regression, as the baseline is),
not trained with the network: trained jointly it gained nothing (session 5, bench/results).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn


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
        from sklearn.linear_model import LogisticRegression

        X = np.stack([f.float().mean(1).flatten().numpy() for f in feats]).astype(np.float64)  # (N, L * D)
        mean, scale = X.mean(0), X.std(0)
        scale[scale < 1e-8] = 1.0  # a constant feature stays as it is (as StandardScaler does)
        classes = np.unique(labels)
        if len(classes) == 1:  # nothing to tell apart (a tiny training set): the one class seen
            coef, intercept = np.zeros((1, X.shape[1])), np.zeros(1)
        else:
            clf = LogisticRegression(max_iter=2000, random_state=seed).fit((X - mean) / scale, labels)
            coef, intercept = clf.coef_, clf.intercept_
        if len(classes) == 2:  # scikit-learn keeps one row for two classes: logits (0, z) give sigmoid(z)
            coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
        weight = torch.zeros_like(self.weight)
        bias = torch.full_like(self.bias, -1e4)
        rows = torch.as_tensor(classes, dtype=torch.long)
        weight[rows] = torch.as_tensor(coef, dtype=weight.dtype)
        bias[rows] = torch.as_tensor(intercept, dtype=bias.dtype)
        self.mean.copy_(torch.as_tensor(mean)), self.scale.copy_(torch.as_tensor(scale))
        self.weight.copy_(weight), self.bias.copy_(bias)
        self.fitted.fill_(True)
        self.is_fitted = True
        return self


def _read_fitted(module: LayerMeanProbe, incompatible_keys: object) -> None:
    module.is_fitted = bool(module.fitted)
