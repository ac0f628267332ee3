"""Stage 2: the adapter's backbone + SAP (or mean pooling) + a linear emotion classifier; with
``model.residual_probe`` the classifier's logits are a correction added to a fixed linear probe's, and with
``model.probe_weight`` a linear probe on the layers' time means is averaged into its probabilities."""

from __future__ import annotations

import torch
import torch.nn as nn

from ..config import ModelConfig
from .backbone import WAPTransformer
from .probe import LayerMeanProbe, log_prior
from .sap import MeanPooling, StatisticalAttentivePooling


class EmotionClassifier(nn.Module):
    def __init__(self, cfg: ModelConfig, num_layers: int, dim: int, num_classes: int):
        super().__init__()
        self.backbone = WAPTransformer(cfg, num_layers, dim)
        sap = cfg.pooling == "sap"
        self.pool = StatisticalAttentivePooling(cfg.width, cfg.sap_hidden) if sap else MeanPooling()
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * cfg.width if sap else cfg.width, num_classes))
        self.attribute_head = nn.Linear(cfg.width, cfg.num_attributes)  # optional stage 2 auxiliary loss
        self.probe_weight = cfg.probe_weight
        self.probe = LayerMeanProbe(num_layers, dim, num_classes) if cfg.probe_weight > 0 else None
        # The probe the head corrects (fitted by stage 2 before it trains, then fixed), and a head that adds
        # nothing at the start: training begins at the probe and moves off it only where that pays
        self.prior = LayerMeanProbe(num_layers, dim, num_classes) if cfg.residual_probe else None
        if self.prior is not None:
            nn.init.zeros_(self.head[-1].weight), nn.init.zeros_(self.head[-1].bias)

    def forward(
        self, feats: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor | None = None,
        speech: torch.Tensor | None = None, prior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, L, T, D), mask (B, T) -> logits (B, C) and frames (B, T, H). ``speech`` (B, T): pool
        these frames only (``VadConfig.pool_speech``); the backbone still sees every real frame. ``prior``
        (B, C): in training, the residual probe's out-of-fold log-probabilities of these clips, in place of
        its own. Once the probe is fitted the logits are the log of the two parts' averaged probabilities."""
        pooled, frames = self.embed(feats, mask, time_mask, speech)
        logits = self.corrected(self.head(pooled), feats, mask, prior)
        if self.probe is not None and self.probe.is_fitted:
            w = self.probe_weight
            p = (1 - w) * logits.softmax(-1) + w * self.probe(feats, mask).softmax(-1)
            logits = p.clamp_min(1e-12).log()
        return logits, frames

    def corrected(self, logits: torch.Tensor, feats: torch.Tensor, mask: torch.Tensor,
                  prior: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C) the head's logits, added to the residual probe's log-probabilities where there is one."""
        if self.prior is None:
            return logits
        return logits + (prior if prior is not None else log_prior(self.prior(feats, mask)))

    def embed(
        self, feats: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor | None = None,
        speech: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, P) the pooled clip the head reads and (B, T, H) its frames: what a training-only branch (the
        speaker adversary) reads too."""
        frames, _ = self.backbone(feats, mask, time_mask)
        return self.pool(frames, pool_mask(mask, speech)), frames


def pool_mask(mask: torch.Tensor, speech: torch.Tensor | None) -> torch.Tensor:
    """(B, T) the frames pooling weighs: the real frames that are speech, or every real frame of a clip
    without speech (it must still be classified)."""
    if speech is None:
        return mask
    both = mask & speech
    return torch.where(both.any(1, keepdim=True), both, mask)
