"""Load any audio file as 16 kHz mono float32, or fail with an error that names the file.

Validation happens before the expensive steps: size and duration are read from the header,
so a 4 GB file is refused without decoding it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .config import SAMPLE_RATE, AudioConfig
from .errors import AudioError


def load_audio(path: str | Path, cfg: AudioConfig | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Read ``path`` and return a (samples,) float32 array at ``cfg.sample_rate``."""
    cfg = cfg or AudioConfig()
    max_seconds = cfg.max_seconds if max_seconds is None else max_seconds
    path = Path(path)
    if not path.is_file():
        raise AudioError(path, "no such file")
    size = path.stat().st_size
    if size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if size > cfg.max_megabytes * 1e6:
        raise AudioError(
            path, f"file is {size / 1e6:.0f} MB, over the {cfg.max_megabytes:.0f} MB limit (AudioConfig.max_megabytes)"
        )
    try:
        info = sf.info(str(path))
        _check_duration(path, info.frames / info.samplerate if info.samplerate else 0.0, max_seconds)
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    except AudioError:
        raise
    except Exception:  # not a format libsndfile knows: let librosa/audioread try (mp3, m4a, ...)
        wave, sr = _load_with_librosa(path)
    return prepare_audio(wave, sr, path, cfg, max_seconds)


def _load_with_librosa(path: Path) -> tuple[np.ndarray, int]:
    import warnings

    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wave, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as e:
        raise AudioError(path, f"not a readable audio file ({type(e).__name__}: {e})") from None
    return (wave.T if wave.ndim == 2 else wave), int(sr)


def _check_duration(name: str | Path, seconds: float, max_seconds: float) -> None:
    if seconds > max_seconds:
        raise AudioError(name, f"audio is {seconds:.1f} s long, over the {max_seconds:g} s limit (AudioConfig.max_seconds)")


def prepare_audio(
    wave: np.ndarray, sr: int, name: str | Path = "<audio>", cfg: AudioConfig | None = None, max_seconds: float | None = None
) -> np.ndarray:
    """Validate an in-memory signal (a file, an upload, a microphone take) and bring it to 16 kHz mono.

    ``wave`` is (samples,) or (samples, channels); integer PCM is scaled to [-1, 1].
    """
    cfg = cfg or AudioConfig()
    max_seconds = cfg.max_seconds if max_seconds is None else max_seconds
    wave = np.asarray(wave)
    if np.issubdtype(wave.dtype, np.integer):
        wave = wave.astype(np.float32) / float(np.iinfo(wave.dtype).max + 1)
    wave = wave.astype(np.float32, copy=False)
    if wave.ndim == 2:
        wave = wave.mean(axis=1)  # (samples,): stereo and multichannel are averaged
    if wave.ndim != 1:
        raise AudioError(name, f"expected (samples,) or (samples, channels) audio, got shape {wave.shape}")
    if wave.size == 0 or sr <= 0:
        raise AudioError(name, "no audio samples (empty audio)")
    if not np.isfinite(wave).all():
        raise AudioError(name, "audio contains NaN or infinite samples")
    _check_duration(name, wave.size / sr, max_seconds)
    if np.abs(wave).max() < cfg.silence_peak:
        raise AudioError(name, f"audio is silent (peak amplitude below {cfg.silence_peak:g})")
    if sr != cfg.sample_rate:
        wave = soxr.resample(wave, sr, cfg.sample_rate, quality="HQ").astype(np.float32, copy=False)
    return np.ascontiguousarray(wave)


def windows(n_samples: int, window_seconds: float, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """Consecutive windows of ``window_seconds`` for long audio; a short remainder (under half a window)
    joins the last, so no window is a sliver."""
    size = max(1, int(window_seconds * sr))
    bounds = list(range(0, n_samples, size)) + [n_samples]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < size // 2:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))
