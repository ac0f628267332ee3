"""Inference: audio file or signal -> emotion probabilities, with the pictures' ingredients.

The encoder loads once; each clip runs encoder -> frame-rate reduction -> adapter -> SAP -> head.
Audio longer than ``AudioConfig.window_seconds`` runs window by window, so time grows linearly
and memory stays flat with the length; the windows also give an emotion timeline.
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
    probabilities: dict[str, float]  # label -> probability, highest first (duration-weighted over windows)
    attention: np.ndarray  # (T,) SAP attention over frames, each window's summing to 1 (empty for mean pooling)
    frame_rate: float  # frames per second of ``attention``
    layer_weights: np.ndarray  # (L,) WAP weights
    windows: np.ndarray  # (W, 2) start and end second of each window (one row for a short clip)
    window_probabilities: np.ndarray  # (W, C) class probabilities per window, columns in ``labels`` order
    labels: list[str]  # the checkpoint's label order

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

    def windows(self, n_samples: int, sr: int = 16_000) -> list[tuple[int, int]]:
        """Consecutive windows of ``window_seconds``; a short remainder (under half a window) joins the last."""
        size = max(1, int(self.audio_cfg.window_seconds * sr))
        bounds = list(range(0, n_samples, size)) + [n_samples]
        if len(bounds) > 2 and bounds[-1] - bounds[-2] < size // 2:
            del bounds[-2]
        return list(zip(bounds[:-1], bounds[1:]))

    @torch.inference_mode()
    def _window(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One window -> class probabilities (C,) and SAP attention (T,)."""
        [hidden] = self.encoder([wave])
        feats = reduce_frames(hidden, self.stride).float().unsqueeze(0).to(self.encoder.device)  # (1, L, T, D)
        mask = torch.ones(1, feats.shape[2], dtype=torch.bool, device=feats.device)
        logits, frames = self.model(feats, mask)
        pool = self.model.pool
        attention = pool.attention(frames, mask)[0].cpu().numpy() if hasattr(pool, "attention") else np.zeros(0)
        return logits.softmax(-1)[0].float().cpu().numpy(), attention

    def predict_wave(self, wave: np.ndarray, sr: int = 16_000, name: str = "<audio>") -> Prediction:
        wave = prepare_audio(wave, sr, name, self.audio_cfg, self.audio_cfg.predict_max_seconds)
        sr = self.audio_cfg.sample_rate
        spans = self.windows(wave.size, sr)
        results = [self._window(wave[a:b]) for a, b in spans]
        probs = np.stack([p for p, _ in results])  # (W, C)
        lengths = np.array([b - a for a, b in spans], dtype=np.float64)
        mean = (probs * lengths[:, None]).sum(0) / lengths.sum()
        order = np.argsort(-mean)
        return Prediction(
            {self.labels[i]: float(mean[i]) for i in order}, np.concatenate([a for _, a in results]),
            self.encoder.frame_rate / self.stride, self.model.backbone.wap.weights.detach().cpu().numpy(),
            np.array(spans, dtype=np.float64) / sr, probs, list(self.labels),
        )

    def predict_file(self, path: str | Path) -> Prediction:
        return self.predict_wave(load_audio(path, self.audio_cfg, self.audio_cfg.predict_max_seconds), 16_000, str(path))
