"""WAP: weighted average pooling over the encoder's layers with learned softmax weights."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class WeightedAveragePooling(nn.Module):
    """(B, L, T, D) -> (B, T, D): one learned weight per encoder layer, softmax-normalised.

    ``last_only`` is the ablation that keeps just the final layer (no weights learned). With
    ``normalise`` each layer is layer-normed first (as S3PRL's featurizer can): encoder layers
    differ in scale (several-fold in HuBERT-style models), and the largest would otherwise
    dominate whatever the weights say.
    """

    def __init__(self, num_layers: int, last_only: bool = False, normalise: bool = True):
        super().__init__()
        self.last_only, self.normalise = last_only, normalise
        self.logits = nn.Parameter(torch.zeros(num_layers))  # uniform weights at the start

    @property
    def weights(self) -> torch.Tensor:  # (L,)
        if self.last_only:
            w = torch.zeros_like(self.logits)
            w[-1] = 1.0
            return w
        return torch.softmax(self.logits, dim=0)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        if self.normalise:
            layers = F.layer_norm(layers, layers.shape[-1:])
        if self.last_only:
            return layers[:, -1]
        # A sum over layer slices, not an einsum: on a CPU the einsum first copies the whole (B, L, T, D) input
        # into (B, T, D, L) order, which took longer than the weighted sum itself.
        w = self.weights.to(layers.dtype)
        out = w[0] * layers[:, 0]
        for i in range(1, layers.shape[1]):
            out = out + w[i] * layers[:, i]  # (B, T, D)
        return out
