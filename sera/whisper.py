"""Whisper's audio encoder as a few small modules, loaded straight from a model folder's safetensors.

sera uses only the encoder, but importing transformers' Whisper module pulls in generation,
masking and distributed code: about 3 s of a 5 s ``sera predict`` on a 2-core CPU. This module
computes the same thing (checked against ``transformers.WhisperModel`` in ``tests/test_encoders.py``)
from the same weights, with the same parameter names (``conv1``, ``layers.N.self_attn.q_proj``, ...),
so ``sera.encoders.whisper_states`` and ``sera.export`` run on either. A model whose weights are not
a local safetensors file (a hub id not downloaded yet, PyTorch pickles) still loads through
transformers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class WhisperEncoderConfig:
    num_mel_bins: int = 80  # log-mel channels of the input
    d_model: int = 512  # width
    encoder_layers: int = 6  # transformer blocks
    encoder_attention_heads: int = 8
    encoder_ffn_dim: int = 2048  # feed-forward width
    max_source_positions: int = 1500  # 30 s at 50 frames per second

    @classmethod
    def of(cls, config) -> "WhisperEncoderConfig":
        """From a transformers ``WhisperConfig`` (or anything with these attributes)."""
        if getattr(config, "activation_function", "gelu") != "gelu":
            raise ValueError(f"activation {config.activation_function!r}: only Whisper's gelu is implemented")
        return cls(**{k: getattr(config, k) for k in cls.__dataclass_fields__})


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)  # Whisper's keys have no bias
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))  # each (B, H, T, D / H)
        y = F.scaled_dot_product_attention(q, k, v)  # scaled by (D / H) ** -0.5, no mask: every frame is real
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class EncoderLayer(nn.Module):
    """Pre-norm block: x + attention(norm(x)), then x + MLP(norm(x))."""

    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.self_attn = Attention(cfg.d_model, cfg.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.d_model)
        self.fc1 = nn.Linear(cfg.d_model, cfg.encoder_ffn_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_dim, cfg.d_model)
        self.final_layer_norm = nn.LayerNorm(cfg.d_model)

    def forward(self, x: torch.Tensor, mask: None = None) -> torch.Tensor:  # mask: transformers' signature
        x = x + self.self_attn(self.self_attn_layer_norm(x))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class WhisperEncoder(nn.Module):
    def __init__(self, cfg: WhisperEncoderConfig):
        super().__init__()
        self.conv1 = nn.Conv1d(cfg.num_mel_bins, cfg.d_model, 3, padding=1)
        self.conv2 = nn.Conv1d(cfg.d_model, cfg.d_model, 3, stride=2, padding=1)  # 100 -> 50 frames per second
        self.embed_positions = nn.Embedding(cfg.max_source_positions, cfg.d_model)
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.encoder_layers))
        self.layer_norm = nn.LayerNorm(cfg.d_model)
    # forward: sera.encoders.whisper_states (every hidden state, any length up to 30 s)


def weight_file(folder: Path) -> list[Path]:
    """The folder's safetensors files (one, or the shards its index names); [] when there are none."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / n for n in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    single = folder / "model.safetensors"
    return [single] if single.is_file() else []


def load_whisper_encoder(folder: Path, config) -> WhisperEncoder | None:
    """The encoder of the Whisper checkpoint in ``folder`` (a ``WhisperModel`` or a
    ``WhisperForConditionalGeneration``: keys under ``encoder.`` or ``model.encoder.``), in float32;
    None when the folder has no safetensors weights or they do not hold a whole encoder."""
    from safetensors import safe_open

    files = weight_file(folder)
    if not files:
        return None
    model = WhisperEncoder(WhisperEncoderConfig.of(config))
    wanted = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for key in f.keys():
                for prefix in ("model.encoder.", "encoder."):
                    if key.startswith(prefix) and key[len(prefix):] in wanted:
                        state[key[len(prefix):]] = f.get_tensor(key).float()
    if set(state) != set(wanted) or any(state[k].shape != wanted[k].shape for k in wanted):
        return None
    model.load_state_dict(state)
    return model.eval()


def mel_filters(n_fft: int, n_mels: int, sample_rate: int, max_hz: float = 8000.0) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on Slaney's mel scale, Slaney-normalised: Whisper's (the
    values of transformers' ``mel_filter_bank`` as ``WhisperFeatureExtractor`` calls it; tests compare them)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, min_log_hz) / min_log_hz) / logstep,
                        hz / f_sp)

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    fft_hz = np.linspace(0, sample_rate // 2, n_fft // 2 + 1)
    edges = to_hz(np.linspace(to_mel(0.0), to_mel(max_hz), n_mels + 2))  # (n_mels + 2,) filter corners
    slopes = edges[None, :] - fft_hz[:, None]  # (F, n_mels + 2)
    width = np.diff(edges)
    down, up = -slopes[:, :-2] / width[:-1], slopes[:, 2:] / width[1:]
    bank = np.maximum(0.0, np.minimum(down, up))
    return bank * (2.0 / (edges[2:] - edges[:-2]))[None, :]


class LogMel:
    """Whisper's log-mel front end, as ``WhisperFeatureExtractor`` computes it for one clip (centred Hann STFT,
    power, mel, log10, 8 decades, scaled), without importing transformers (half a second of ``sera predict``).
    ``settings``: the model folder's ``preprocessor_config.json``."""

    def __init__(self, settings: dict | None = None):
        s = settings or {}
        if s.get("dither", 0.0) or s.get("do_normalize", False):
            raise ValueError("dither or do_normalize in Whisper's feature extractor settings: not supported")
        self.n_fft, self.hop_length = int(s.get("n_fft", 400)), int(s.get("hop_length", 160))
        self.sampling_rate = int(s.get("sampling_rate", 16_000))
        self.n_samples = int(s.get("chunk_length", 30)) * self.sampling_rate  # what padded input is padded to
        self.padding_value = float(s.get("padding_value", 0.0))
        self.mel_filters = mel_filters(self.n_fft, int(s.get("feature_size", 80)), self.sampling_rate)

    @classmethod
    def of_folder(cls, folder: Path | None, n_mels: int = 80) -> "LogMel":
        """From the folder's settings; without them (a hub download holds only config and weights), Whisper's
        defaults with the model's ``n_mels`` (80, or 128 for large-v3)."""
        path = folder / "preprocessor_config.json" if folder is not None else None
        return cls(json.loads(path.read_text()) if path is not None and path.is_file() else {"feature_size": n_mels})

    def __call__(self, wave: np.ndarray, padded: bool = False) -> torch.Tensor:
        """(1, n_mels, frames) float32 of a 16 kHz clip, its real length or padded (and cut) to 30 s."""
        wave = np.asarray(wave, dtype=np.float32)
        if padded:
            wave = np.pad(wave[: self.n_samples], (0, max(0, self.n_samples - len(wave))),
                          constant_values=self.padding_value)
        stft = torch.stft(torch.from_numpy(wave), self.n_fft, self.hop_length, window=torch.hann_window(self.n_fft),
                          return_complex=True)
        power = (stft[..., :-1].abs() ** 2).contiguous()  # (F, frames): the last frame dropped, as Whisper does
        mel = (torch.from_numpy(self.mel_filters).float().T @ power).clamp_min(1e-10).log10()
        mel = torch.maximum(mel, mel.max() - 8.0)
        return ((mel + 4.0) / 4.0)[None]
