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
from typing import NamedTuple

import numpy as np

from .audio import load_audio, windows
from .calibrate import domain_distance, flags, temper, warning
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


class OnnxPrediction(NamedTuple):
    probabilities: np.ndarray  # (C,) in the order of the export's labels, windows weighed by their length
    windows: np.ndarray  # (W, 2) start and end in seconds
    window_probabilities: np.ndarray  # (W, C)
    domain_distance: float | None  # as ``Prediction.domain_distance``; None for an export without the check
    flags: list[str]  # "uncertain", "out of domain" (``sera.calibrate.flags``)

    def warning(self) -> str:
        return warning(self.flags, self.domain_distance, float(self.probabilities.max()))


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
        self.uncertain_below = float(self.spec.get("uncertain_below", 0.0))  # exports before the flags: no flags
        self.threshold = self.spec.get("domain_threshold")
        self.domain = ((np.load(folder / "domain_mean.npy"), np.load(folder / "domain_std.npy"))
                       if self.threshold is not None else None)

    def _input(self, wave: np.ndarray) -> np.ndarray:
        if self.filters is None:
            return wave.astype(np.float32)[None]
        return log_mel(wave, self.filters, self.spec["n_fft"], self.spec["hop_length"])[None]

    def probabilities(self, wave: np.ndarray) -> tuple[np.ndarray, float]:
        """(C,) for one window of 16 kHz audio, under the checkpoint's temperature (as ``Predictor``), and the
        window's domain distance (nan without a domain check)."""
        outputs = self.session.run(None, {"input": self._input(wave)})
        probs = temper(outputs[0], self.spec.get("temperature", 1.0))[0]
        if self.domain is None:  # an export made before the flags
            return probs, float("nan")
        return probs, float(domain_distance(outputs[1][None], *self.domain)[0])

    def predict_wave(self, wave: np.ndarray) -> OnnxPrediction:
        """Windows of fixed length, scored one at a time, then weighed by their length (as ``Predictor``)."""
        spans = windows(len(wave), self.audio_cfg.window_seconds)
        scored = [self.probabilities(wave[a:b]) for a, b in spans]
        probs = np.stack([p for p, _ in scored])
        lengths = np.array([b - a for a, b in spans], dtype=np.float64)
        mean = (probs * lengths[:, None]).sum(0) / lengths.sum()
        distance = float((np.array([d for _, d in scored]) * lengths).sum() / lengths.sum()) if self.domain else None
        return OnnxPrediction(mean, np.array(spans) / SAMPLE_RATE, probs, distance,
                              flags(mean, distance, self.uncertain_below, self.threshold))

    def predict_file(self, path: str | Path) -> OnnxPrediction:
        return self.predict_wave(load_audio(path, self.audio_cfg, self.audio_cfg.predict_max_seconds))
