"""Run a ``sera export --onnx`` folder with onnxruntime: numpy, soundfile and onnxruntime only (no torch,
no transformers), so that one prediction starts in about a second.

Whisper's log-mel front end is recomputed here in numpy with the filters the export saved; it
matches transformers' ``WhisperFeatureExtractor`` (tested). Long audio runs in fixed windows, as
``Predictor`` does with its VAD off: this route has no voice activity detection (Silero runs in
torch here), so it neither cuts at pauses nor refuses a recording without speech.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .audio import load_audio, windows
from .calibrate import temper
from .config import SAMPLE_RATE, AudioConfig
from .errors import SeraError


def log_mel(wave: np.ndarray, filters: np.ndarray, n_fft: int = 400, hop: int = 160) -> np.ndarray:
    """(n_mels, n_samples // hop) Whisper log-mel: centred Hann STFT, power, mel, log10, 8 decades, scaled."""
    padded = np.pad(wave.astype(np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (len(padded) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2  # (frames, n_fft // 2 + 1)
    mel = np.log10(np.maximum(power[:-1] @ filters, 1e-10)).T  # (n_mels, frames - 1)
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)


class OnnxPredictor:
    def __init__(self, folder: str | Path):
        import onnxruntime as ort

        folder = Path(folder)
        try:
            self.spec = json.loads((folder / "sera-onnx.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SeraError(f"{folder}: not a sera ONNX export (run `sera export --onnx CHECKPOINT {folder}`; {e})") from None
        self.labels: list[str] = self.spec["labels"]
        self.filters = np.load(folder / "mel_filters.npy") if self.spec["input"] == "log_mel" else None
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.audio_cfg = AudioConfig(window_seconds=self.spec["window_seconds"])

    def _input(self, wave: np.ndarray) -> np.ndarray:
        if self.filters is None:
            return wave.astype(np.float32)[None]
        return log_mel(wave, self.filters, self.spec["n_fft"], self.spec["hop_length"])[None]

    def probabilities(self, wave: np.ndarray) -> np.ndarray:
        """(C,) for one window of 16 kHz audio, under the checkpoint's temperature (as ``Predictor``)."""
        return temper(self.session.run(None, {"input": self._input(wave)})[0], self.spec.get("temperature", 1.0))[0]

    def predict_wave(self, wave: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Duration-weighted probabilities (C,), windows (W, 2) in seconds and their probabilities (W, C)."""
        spans = windows(len(wave), self.audio_cfg.window_seconds)
        probs = np.stack([self.probabilities(wave[a:b]) for a, b in spans])
        lengths = np.array([b - a for a, b in spans], dtype=np.float64)
        return (probs * lengths[:, None]).sum(0) / lengths.sum(), np.array(spans) / SAMPLE_RATE, probs

    def predict_file(self, path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.predict_wave(load_audio(path, self.audio_cfg, self.audio_cfg.predict_max_seconds))
