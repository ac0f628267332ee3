"""``sera export --onnx``: one ONNX graph from the encoder's input (Whisper's log-mel frames, or the
wave for HuBERT / wav2vec 2.0 / WavLM) to class probabilities: encoder + frame-rate reduction +
speaker statistics + adapter + SAP + head, for clips of any length.

The folder it writes (``model.onnx``, ``sera-onnx.json``, ``mel_filters.npy`` for Whisper) is what
``sera.onnx_predict`` runs with onnxruntime and numpy alone: no torch, no transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .config import SAMPLE_RATE
from .encoders import whisper_states
from .errors import SeraError
from .io import atomic_write_text
from .features import Stats
from .predict import Predictor

OPSET = 18


class _Graph(torch.nn.Module):
    """The whole path of one clip, as ``Predictor`` runs it (clip protocol)."""

    def __init__(self, predictor: Predictor):
        super().__init__()
        self.encoder, self.model = predictor.encoder, predictor.model
        self.layers = predictor.encoder.layers
        self.stride = predictor.stride
        stats: Stats | None = predictor.reference if predictor.speaker_normalised else None
        self.register_buffer("mean", stats.mean if stats is not None else torch.zeros(1, 1))
        self.register_buffer("std", stats.std if stats is not None else torch.ones(1, 1))
        self.whisper = predictor.encoder.is_whisper
        self.per_clip = predictor.normalise == "utterance"  # each clip standardised with its own statistics

    def _whisper(self, mel: torch.Tensor) -> torch.Tensor:  # (1, n_mels, M) -> (L, T, D)
        return whisper_states(self.encoder.model, mel)[:, 0]

    def _wav2vec(self, wave: torch.Tensor) -> torch.Tensor:  # (1, S) -> (L, T, D)
        if getattr(self.encoder.feature_extractor, "do_normalize", False):
            wave = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        return torch.stack(self.encoder.model(wave, output_hidden_states=True).hidden_states)[:, 0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self._whisper(x) if self.whisper else self._wav2vec(x)  # (L, T, D)
        h = h[self.layers]
        L, T, D = h.shape
        n = T // self.stride if T >= self.stride else 1
        h = h[:, : n * self.stride].reshape(L, n, -1, D).mean(2)  # frame-rate reduction
        layer_means = h.mean(1)  # (L, D): what the domain check measures, before any normalisation
        if self.per_clip:  # as Stats.of([h]).apply(h)
            mean = h.mean(1, keepdim=True)
            h = (h - mean) / (h - mean).pow(2).mean(1, keepdim=True).sqrt().clamp_min(1e-3)
        else:
            h = (h - self.mean.unsqueeze(-2)) / self.std.unsqueeze(-2)  # identity for unnormalised checkpoints
        feats = h.unsqueeze(0)  # (1, L, T', D)
        mask = torch.ones(1, feats.shape[2], dtype=torch.bool)
        logits, _ = self.model(feats, mask)
        return logits.softmax(-1), layer_means  # (1, C), (L, D)


def whisper_input(predictor: Predictor, wave: np.ndarray) -> np.ndarray:
    """Log-mel frames cut to the frames that cover real audio, as ``Encoder._whisper`` keeps them."""
    mel = predictor.encoder.feature_extractor(wave).numpy()  # (1, n_mels, M)
    return mel[:, :, : 2 * int(np.ceil(min(len(wave) // 160, 3000) / 2))].astype(np.float32)


def export_onnx(checkpoint: str | Path, out: str | Path, encoder: str | None = None) -> Path:
    """Write ``out/model.onnx`` and what running it needs; returns ``out``."""
    predictor = Predictor(checkpoint, encoder, device="cpu")
    if predictor.trim or predictor.pool_speech:
        how = "trimmed to their speech (vad.trim)" if predictor.trim else "with SAP that pools speech frames only (vad.pool_speech)"
        raise SeraError(f"{checkpoint} was trained on clips {how}, which needs the voice-activity model; the ONNX "
                        "route scores whole windows. Use sera predict without --onnx")
    graph = _Graph(predictor).eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    wave = np.random.default_rng(0).normal(0, 0.1, 3 * SAMPLE_RATE).astype(np.float32)
    example = torch.from_numpy(whisper_input(predictor, wave) if graph.whisper else wave[None])
    axis = 2 if graph.whisper else 1
    tmp = out / "model.onnx.partial"
    try:
        with torch.inference_mode():
            torch.onnx.export(graph, (example,), str(tmp), input_names=["input"], output_names=["probabilities", "layer_means"],
                              dynamic_shapes=({axis: torch.export.Dim("frames", min=8, max=3000 if graph.whisper
                                                                       else SAMPLE_RATE * 3600)},),
                              opset_version=OPSET, dynamo=True, external_data=False)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise SeraError(f"could not export {checkpoint} to ONNX ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    tmp.replace(out / "model.onnx")
    spec = {"labels": predictor.labels, "input": "log_mel" if graph.whisper else "wave", "sample_rate": SAMPLE_RATE,
            "window_seconds": predictor.audio_cfg.window_seconds, "encoder": predictor.meta["encoder"]["name"],
            "checkpoint": str(checkpoint), "protocol": "clip", "temperature": predictor.temperature,
            "uncertain_below": predictor.calibration.uncertain_below}
    if predictor.domain is not None:  # the out-of-domain flag, as Predictor raises it (sera.calibrate.flags)
        np.save(out / "domain_mean.npy", predictor.domain.stats.mean.numpy())  # (L, D)
        np.save(out / "domain_std.npy", predictor.domain.stats.std.numpy())
        spec["domain_threshold"] = predictor.domain.threshold
    if graph.whisper:
        fe = predictor.encoder.feature_extractor
        np.save(out / "mel_filters.npy", np.asarray(fe.mel_filters, dtype=np.float32))  # (n_fft // 2 + 1, n_mels)
        spec |= {"n_fft": fe.n_fft, "hop_length": fe.hop_length}
    atomic_write_text(out / "sera-onnx.json", json.dumps(spec, indent=2))
    return out
