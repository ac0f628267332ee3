"""WAP-Transformer: the adapter's backbone, from every encoder layer to enriched frames.

(B, L, T, D) encoder layers -> WAP -> (B, T, D) -> LayerNorm + Linear -> (B, T, H)
-> [masked frames replaced by a learned vector] -> conv positional term -> Transformer blocks.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .wap import WeightedAveragePooling


class Block(nn.Module):
    """Pre-norm Transformer block with a padding mask (nanoGPT style, not causal)."""

    def __init__(self, width: int, heads: int, ffn_mult: int, dropout: float, drop_path: float = 0.0):
        super().__init__()
        self.heads, self.dropout, self.drop_path = heads, dropout, drop_path
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ffn = nn.Sequential(nn.Linear(width, ffn_mult * width), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, T, H = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(H, dim=2)
        q, k, v = (t.view(B, T, self.heads, H // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :],
                                           dropout_p=self.dropout if self.training else 0.0)
        x = x + self.skip(self.drop(self.proj(y.transpose(1, 2).reshape(B, T, H))))
        return x + self.skip(self.drop(self.ffn(self.ln2(x))))

    def skip(self, branch: torch.Tensor) -> torch.Tensor:
        """Stochastic depth (Huang et al. 2016): in training, a residual branch (B, T, H) is dropped for a random
        share ``drop_path`` of the clips, the others' scaled up to keep its expectation; shallower nets for free."""
        if not self.training or self.drop_path == 0.0:
            return branch
        keep = torch.rand(branch.shape[0], 1, 1, device=branch.device) >= self.drop_path  # (B, 1, 1)
        return branch * keep / (1.0 - self.drop_path)


class WAPTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig, num_layers: int, dim: int):
        super().__init__()
        self.wap = WeightedAveragePooling(num_layers, last_only=cfg.layer_pooling == "last", normalise=cfg.layer_norm)
        self.norm_in = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, cfg.width)
        self.mask_embedding = nn.Parameter(torch.normal(0.0, 0.02, size=(cfg.width,)))  # stands in for masked frames
        # A depthwise convolution gives relative position at any length (long audio, windows).
        self.pos_conv = nn.Conv1d(cfg.width, cfg.width, kernel_size=15, padding=7, groups=cfg.width)
        n = cfg.layers if cfg.transformer else 0
        # deeper blocks are dropped more often (the linear rule), the last at cfg.drop_path
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.ffn_mult, cfg.dropout, cfg.drop_path * (i + 1) / n)
                                    for i in range(n))
        self.norm_out = nn.LayerNorm(cfg.width)

    def forward(
        self, feats: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """feats (B, L, T, D), mask (B, T) True on real frames, time_mask (B, T) True where masked.

        Returns the output frames (B, T, H) and each block's output (for distillation targets).
        """
        x = self.proj(self.norm_in(self.wap(feats)))  # (B, T, H)
        if time_mask is not None:
            x = torch.where(time_mask.unsqueeze(-1), self.mask_embedding.to(x.dtype), x)
        x = x * mask.unsqueeze(-1)
        x = x + F.gelu(self.pos_conv(x.transpose(1, 2))).transpose(1, 2)
        layers = []
        for block in self.blocks:
            x = block(x, mask)
            layers.append(x)
        return self.norm_out(x), layers
