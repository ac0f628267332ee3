"""A speaker-adversarial branch for stage 2 (gradient reversal, Ganin & Lempitsky 2015): a small speaker
classifier reads the pooled clip, and the backbone below it is pushed the other way, towards clips whose
speaker cannot be told. Raw features carry the voice, and a few dozen training speakers are few enough for
a head to learn them as a shortcut; one clip of an unknown speaker is what a user brings. Training only: the
checkpoint keeps the ``EmotionClassifier`` alone."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .classifier import EmotionClassifier


class GradientReversal(torch.autograd.Function):
    """The identity going forward; going back, the gradient times ``-scale``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


class SpeakerAdversarial(nn.Module):
    """The classifier and a speaker head behind a gradient reversal, trained as one module (so a
    distributed run's forward goes through one wrapper)."""

    def __init__(self, classifier: EmotionClassifier, num_speakers: int, hidden: int = 256):
        super().__init__()
        self.classifier = classifier
        pooled = classifier.head[-1].in_features  # 2H after SAP, H after mean pooling
        self.speaker_head = nn.Sequential(nn.Linear(pooled, hidden), nn.ReLU(), nn.Linear(hidden, num_speakers))

    def forward(
        self, feats: torch.Tensor, mask: torch.Tensor, time_mask: torch.Tensor | None = None,
        speech: torch.Tensor | None = None, scale: float = 1.0, prior: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """As ``EmotionClassifier.forward`` (an unfitted probe), plus speaker logits (B, S); the backbone
        gets the speaker loss's gradient reversed and times ``scale``."""
        pooled, frames = self.classifier.embed(feats, mask, time_mask, speech)  # (B, P), (B, T, H)
        logits = self.classifier.corrected(self.classifier.head(pooled), feats, mask, prior)
        return logits, frames, self.speaker_head(GradientReversal.apply(pooled, scale))


def reversal_scale(progress: float, weight: float) -> float:
    """DANN's ramp: 0 at the start, when the speaker head knows nothing, towards ``weight`` by the end
    (``progress`` in [0, 1])."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)
