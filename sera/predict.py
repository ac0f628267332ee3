"""Inference: audio file or signal -> emotion probabilities, with the pictures' ingredients.

The encoder loads once; each clip runs encoder -> frame-rate reduction -> adapter -> SAP -> head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio, prepare_audio
from .checkpoint import load_checkpoint, read_checkpoint_config
from .config import AudioConfig, EncoderConfig
from .encoders import Encoder
from .train import reduce_frames


@dataclass
class Prediction:
    probabilities: dict[str, float]  # label -> probability, highest first
    attention: np.ndarray  # (T,) SAP attention over frames (empty for mean pooling)
    frame_rate: float  # frames per second of ``attention``
    layer_weights: np.ndarray  # (L,) WAP weights

    @property
    def label(self) -> str:
        return next(iter(self.probabilities))

    def top(self, k: int) -> list[tuple[str, float]]:
        return list(self.probabilities.items())[:k]


class Predictor:
    def __init__(self, checkpoint: str | Path, encoder: str | None = None, device: str = "auto"):
        meta = read_checkpoint_config(checkpoint)
        enc_cfg = EncoderConfig(name=encoder or meta["encoder"]["name"], whisper_padded=meta["encoder"]["whisper_padded"],
                                device=device)
        self.encoder = Encoder(enc_cfg)
        self.model, self.meta = load_checkpoint(checkpoint, self.encoder.key)
        self.model.to(self.encoder.device)
        self.labels: list[str] = self.meta["labels"]
        self.stride = int(self.meta["model"]["frame_stride"])
        self.audio_cfg = AudioConfig(**{k: v for k, v in self.meta.get("audio", {}).items()
                                        if k in AudioConfig.__dataclass_fields__})

    @torch.inference_mode()
    def predict_wave(self, wave: np.ndarray, sr: int = 16_000, name: str = "<audio>") -> Prediction:
        wave = prepare_audio(wave, sr, name, self.audio_cfg)
        [hidden] = self.encoder([wave])
        feats = reduce_frames(hidden, self.stride).float().unsqueeze(0).to(self.encoder.device)  # (1, L, T, D)
        mask = torch.ones(1, feats.shape[2], dtype=torch.bool, device=feats.device)
        logits, frames = self.model(feats, mask)
        probs = logits.softmax(-1)[0].cpu().numpy()
        order = np.argsort(-probs)
        pool = self.model.pool
        attention = pool.attention(frames, mask)[0].cpu().numpy() if hasattr(pool, "attention") else np.zeros(0)
        return Prediction({self.labels[i]: float(probs[i]) for i in order}, attention,
                          self.encoder.frame_rate / self.stride, self.model.backbone.wap.weights.detach().cpu().numpy())

    def predict_file(self, path: str | Path) -> Prediction:
        return self.predict_wave(load_audio(path, self.audio_cfg), 16_000, str(path))
