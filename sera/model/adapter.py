"""The teacher-student adapter of stage 1: masked student, EMA teacher, two frame-level losses.

- the student (a WAP-Transformer) sees span-masked frames;
- the teacher, an exponential moving average of the student, sees the unmasked input and gets
  no gradient;
- at masked frames the student regresses the teacher's normalised frame representations
  (self-distillation, data2vec-style) and predicts the teacher frame's k-means cluster id
  (local attributes).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig
from .backbone import WAPTransformer


def span_mask(mask: torch.Tensor, prob: float, span: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, T) valid mask -> (B, T) frames to mask: spans of ``span`` frames covering about ``prob`` of them.

    Span starts are drawn with probability prob / span per frame (overlaps make the share a bit
    lower, as in wav2vec 2.0); every clip gets at least one masked span; padding is never masked.
    """
    B, T = mask.shape
    if prob <= 0:
        return torch.zeros_like(mask)
    starts = torch.rand(B, T, generator=generator) < prob / span
    lengths = mask.sum(1)
    forced = torch.randint(0, 1 << 30, (B,), generator=generator) % (lengths - span + 1).clamp_min(1)
    starts[torch.arange(B), forced] = True
    out = torch.zeros_like(mask)
    for offset in range(span):  # expand each start into a span
        out[:, offset:] |= starts[:, : T - offset]
    return out & mask


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:])


class TeacherStudent(nn.Module):
    def __init__(self, cfg: ModelConfig, num_layers: int, dim: int):
        super().__init__()
        self.cfg = cfg
        self.student = WAPTransformer(cfg, num_layers, dim)
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.regress = nn.Linear(cfg.width, cfg.width)  # student frames -> teacher targets
        self.attribute_head = nn.Linear(cfg.width, cfg.num_attributes)  # student frames -> cluster ids

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student."""
        for t, s in zip(self.teacher.parameters(), self.student.parameters()):
            t.mul_(momentum).add_(s.detach(), alpha=1.0 - momentum)

    @torch.no_grad()
    def teacher_frames(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distillation targets, frames to cluster), both (B, T, H), from the unmasked input."""
        self.teacher.eval()
        out, layers = self.teacher(feats, mask)
        top = layers[-self.cfg.target_layers :] or [out]
        targets = _normalise(sum(_normalise(h) for h in top) / len(top))
        return targets, out

    def forward(
        self, feats: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor,
        targets: torch.Tensor | None, attribute_ids: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Losses at masked frames only; a term is absent when its targets are None."""
        out, _ = self.student(feats, mask, time_mask)  # (B, T, H)
        sel = time_mask & mask
        losses = {}
        if targets is not None:
            losses["distill"] = F.mse_loss(self.regress(out[sel]), targets[sel])
        if attribute_ids is not None:
            losses["attributes"] = F.cross_entropy(self.attribute_head(out[sel]), attribute_ids[sel])
        return losses
