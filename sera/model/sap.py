"""SAP: statistical attentive pooling, frames -> one utterance vector (attentive mean and std)."""

from __future__ import annotations

import torch
import torch.nn as nn


class StatisticalAttentivePooling(nn.Module):
    """(B, T, H) + valid mask (B, T) -> (B, 2H): attention-weighted mean and standard deviation.

    The attention scores come from a small MLP over each frame; padded frames get zero weight.
    """

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def attention(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T)
        scores = self.score(x).squeeze(-1).masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return weighted_mean_std(x, self.attention(x, mask))


def weighted_mean_std(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """(B, T, H), weights (B, T) summing to 1 -> (B, 2H) [mean, std]."""
    mean = torch.einsum("bth,bt->bh", x, w)
    var = torch.einsum("bth,bt->bh", x * x, w) - mean * mean
    return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1)


class MeanPooling(nn.Module):
    """The ablation: plain mean over valid frames (B, T, H) -> (B, H)."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp_min(1.0)
