"""A trained model applied to features: class probabilities of many clips, one clip alone (what
``sera predict`` and the clip protocol run), and the frames inside the adapter (for pictures and
probes). Training imports this, never the other way round, so prediction needs no training code."""

from __future__ import annotations

import numpy as np
import torch

from .features import FeatureSet, Stats, collate, length_batches
from .model import EmotionClassifier, pool_mask


@torch.no_grad()
def predict_proba(model: EmotionClassifier, fs: FeatureSet, batch_size: int = 64) -> torch.Tensor:
    """(N, C) class probabilities, in the order of ``fs``."""
    model.eval()
    device = next(model.parameters()).device
    probs = torch.zeros(len(fs), model.head[-1].out_features)
    for idx in length_batches(fs.lengths, batch_size):
        feats, mask, _, speech = collate(fs, idx)
        logits, _ = model(feats.to(device), mask.to(device), speech=None if speech is None else speech.to(device))
        probs[idx] = logits.softmax(-1).float().cpu()
    return probs


@torch.no_grad()
def classify_clip(model: EmotionClassifier, feats: torch.Tensor, stats: Stats | None = None,
                  speech: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One clip alone, as a user's clip is: (L, T, D) features, standardised with ``stats`` when the
    model was trained speaker-normalised, and its (T,) speech frames when it pools speech only ->
    logits (1, C), frames (1, T, H) and the (1, T) mask of the frames pooled.

    The clip protocol and ``Predictor`` both go through here, so a cross-validated clip-protocol
    figure measures what ``sera predict`` computes (from the cache's float16 copy of the features
    where ``Predictor`` has the encoder's float32 ones)."""
    model.eval()
    device = next(model.parameters()).device
    feats = feats.float()
    if stats is not None:
        feats = stats.apply(feats)
    feats = feats.unsqueeze(0).to(device)  # (1, L, T, D)
    mask = torch.ones(1, feats.shape[2], dtype=torch.bool, device=device)
    speech = None if speech is None else speech.reshape(1, -1).to(device)
    logits, frames = model(feats, mask, speech=speech)
    return logits, frames, pool_mask(mask, speech)


@torch.no_grad()
def frame_features(backbone: torch.nn.Module, fs: FeatureSet, after: str = "adapter",
                   batch_size: int = 64) -> list[torch.Tensor]:
    """Each utterance's frames (T_i, H) after WAP alone (``"wap"``, H = encoder width) or after the
    whole WAP-Transformer (``"adapter"``): what the pictures and probes look at."""
    if after not in ("wap", "adapter"):
        raise ValueError(f"after={after!r}: choose wap or adapter")
    backbone.eval()
    device = next(backbone.parameters()).device
    out: list[torch.Tensor] = [torch.empty(0)] * len(fs)
    for idx in length_batches(fs.lengths, batch_size):
        feats, mask, *_ = collate(fs, idx)
        feats, mask = feats.to(device), mask.to(device)
        frames = backbone.wap(feats) if after == "wap" else backbone(feats, mask)[0]  # (B, T, H)
        for b, i in enumerate(idx):
            out[i] = frames[b, : int(mask[b].sum())].float().cpu()
    return out


def embed(backbone: torch.nn.Module, fs: FeatureSet, after: str = "adapter") -> np.ndarray:
    """(N, H) utterance vectors: ``frame_features`` averaged over time."""
    return np.stack([f.mean(0).numpy() for f in frame_features(backbone, fs, after)])
