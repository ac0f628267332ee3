"""Voice activity: where a recording holds speech, from the Silero VAD model.

Acted corpora pad each sentence with about a second of silence and real recordings are mostly not
speech; the emotion is in the speech. Silero VAD (MIT, ~1 M parameters) ships its weights inside
the ``silero-vad`` wheel, so this works offline. sera reads the wheel's safetensors file into the
small torch module below (nothing is unpickled, no onnxruntime needed): a learned STFT, four
convolutions and an LSTM give one speech probability per 32 ms chunk.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000
CHUNK = 512  # samples per probability (32 ms at 16 kHz), as Silero was trained
CONTEXT = 64  # samples of the previous chunk each chunk sees


class SileroVAD(nn.Module):
    """Silero VAD v5/v6 at 16 kHz, layer names as in its safetensors file."""

    def __init__(self) -> None:
        super().__init__()
        self.stft_conv = nn.Conv1d(1, 258, kernel_size=256, stride=128, bias=False)  # real + imaginary, 129 bins
        self.conv1 = nn.Conv1d(129, 128, 3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, 3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, 3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, 128, 3, padding=1)
        self.lstm = nn.LSTM(128, 128, batch_first=True)  # the file's LSTM cell, run over the whole sequence
        self.final_conv = nn.Conv1d(128, 1, 1)

    def forward(self, chunks: torch.Tensor) -> torch.Tensor:
        """(N, CONTEXT + CHUNK) consecutive chunks of one recording -> (N,) speech probabilities."""
        x = nn.functional.pad(chunks, (0, 64), mode="reflect").unsqueeze(1)  # (N, 1, 640)
        x = self.stft_conv(x)  # (N, 258, 4)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()  # magnitude spectrum (N, 129, 4)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(x).relu()
        h, _ = self.lstm(x.squeeze(-1).unsqueeze(0))  # (1, N, 128): the state flows from chunk to chunk
        return self.final_conv(h[0].relu().unsqueeze(-1)).sigmoid().reshape(-1)

    @classmethod
    def from_wheel(cls) -> "SileroVAD":
        from safetensors.torch import load_file

        try:
            path = resources.files("silero_vad.data").joinpath("silero_vad_16k.safetensors")
        except ModuleNotFoundError:
            raise ImportError("voice activity needs the silero-vad package: pip install silero-vad") from None
        state = load_file(str(path))
        for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            state[f"lstm.{part}_l0"] = state.pop(f"lstm_cell.{part}")
        model = cls()
        model.load_state_dict(state)
        return model.eval()


@functools.lru_cache(maxsize=1)
def silero() -> SileroVAD:
    return SileroVAD.from_wheel()


@torch.inference_mode()
def speech_probabilities(wave: np.ndarray) -> np.ndarray:
    """(ceil(n / CHUNK),) speech probability of each 32 ms chunk of a 16 kHz mono ``wave``."""
    x = torch.as_tensor(np.asarray(wave, dtype=np.float32))
    n = -(-len(x) // CHUNK) if len(x) else 0
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    x = nn.functional.pad(x, (CONTEXT, n * CHUNK - len(x)))  # zero context before the first chunk, as Silero does
    chunks = x.unfold(0, CONTEXT + CHUNK, CHUNK)  # (n, 576)
    return silero()(chunks).numpy()


@dataclass(frozen=True)
class Region:
    start: float  # seconds
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


def speech_regions(wave: np.ndarray, threshold: float = 0.5, min_speech: float = 0.25, min_silence: float = 0.1,
                   pad: float = 0.03) -> list[Region]:
    """Speech regions of a 16 kHz mono ``wave``, in seconds.

    Speech starts where the probability reaches ``threshold`` and ends once it has stayed below
    ``threshold - 0.15`` for ``min_silence`` seconds (hysteresis, as Silero's own
    ``get_speech_timestamps``); regions shorter than ``min_speech`` are dropped, the rest padded by
    ``pad`` on each side and merged where the padding makes them touch."""
    probs = speech_probabilities(wave)
    step = CHUNK / SAMPLE_RATE
    low = max(threshold - 0.15, 0.01)
    regions: list[list[float]] = []
    start = None
    quiet_since = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet_since = i, None
            continue
        if p >= low:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = i
        elif (i + 1 - quiet_since) * step >= min_silence:
            regions.append([start * step, quiet_since * step])
            start, quiet_since = None, None
    if start is not None:
        regions.append([start * step, (quiet_since if quiet_since is not None else len(probs)) * step])
    total = len(wave) / SAMPLE_RATE
    merged: list[list[float]] = []
    for a, b in regions:
        if b - a < min_speech:
            continue
        a, b = max(0.0, a - pad), min(total, b + pad)
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [Region(round(a, 4), round(b, 4)) for a, b in merged]
