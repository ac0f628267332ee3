"""WAP: weighted average pooling over the encoder's layers with learned softmax weights."""

from __future__ import annotations

import torch
import torch.nn as nn


class WeightedAveragePooling(nn.Module):
    """(B, L, T, D) -> (B, T, D): one learned weight per encoder layer, softmax-normalised.

    ``last_only`` is the ablation that keeps just the final layer (no weights learned).
    """

    def __init__(self, num_layers: int, last_only: bool = False):
        super().__init__()
        self.last_only = last_only
        self.logits = nn.Parameter(torch.zeros(num_layers))  # uniform weights at the start

    @property
    def weights(self) -> torch.Tensor:  # (L,)
        if self.last_only:
            w = torch.zeros_like(self.logits)
            w[-1] = 1.0
            return w
        return torch.softmax(self.logits, dim=0)

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        if self.last_only:
            return layers[:, -1]
        return torch.einsum("bltd,l->btd", layers, self.weights.to(layers.dtype))
