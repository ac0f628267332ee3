"""Features in memory: a corpus's cached encoder features with labels, and how they are batched.

Sits between the cache (on disk) and everything that trains or probes: normalisation, the two
training stages, the probe and the checkpoints all take a ``FeatureSet``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from tqdm.auto import tqdm

from .audio import load_audio
from .cache import FeatureCache, file_digest, load_features
from .config import AudioConfig, VadConfig
from .data import Corpus, Utterance
from .io import atomic_write_text
from .vad import SAMPLE_RATE, Region, regions_key, speech_frames, speech_regions


@dataclass
class Stats:
    """Per layer and feature statistics of frames: what speaker normalisation (``sera.normalise``) standardises
    with, and what a checkpoint keeps for a clip of an unknown speaker."""

    mean: torch.Tensor  # (L, D)
    std: torch.Tensor  # (L, D)

    @classmethod
    def of(cls, feats: list[torch.Tensor]) -> "Stats":
        """Per layer and feature over every frame of ``feats`` (each (L, T, D)), in float64."""
        n = sum(f.shape[1] for f in feats)
        return cls.from_sums(sum(f.double().sum(1) for f in feats), sum(f.double().pow(2).sum(1) for f in feats), n)

    @classmethod
    def from_sums(cls, total: torch.Tensor, squares: torch.Tensor, n: float) -> "Stats":
        """From (L, D) sums of frames and of their squares over ``n`` frames (float64 for accuracy)."""
        mean = total / n
        var = (squares / n - mean.pow(2)).clamp_min(0)
        return cls(mean.float(), var.sqrt().float().clamp_min(1e-3))

    @classmethod
    def mean_of(cls, speakers: list["Stats"]) -> "Stats":
        """For a clip without a speaker: the mean of the speakers' means and of their stds."""
        return cls(torch.stack([s.mean for s in speakers]).mean(0), torch.stack([s.std for s in speakers]).mean(0))

    def apply(self, h: torch.Tensor) -> torch.Tensor:
        """(…, L, T, D) standardised; float16 input stays float16 (it is how the cache stores features)."""
        mean, std = self.mean.to(h.device).unsqueeze(-2), self.std.to(h.device).unsqueeze(-2)
        return ((h.float() - mean) / std).to(h.dtype)

    def restore(self, h: torch.Tensor) -> torch.Tensor:
        """The inverse of ``apply``: standardised (…, L, T, D) back to these statistics."""
        mean, std = self.mean.to(h.device).unsqueeze(-2), self.std.to(h.device).unsqueeze(-2)
        return (h.float() * std + mean).to(h.dtype)


@dataclass
class FeatureSet:
    """Utterances with their cached features (float16, frame-rate reduced) and class ids."""

    utts: list[Utterance]
    feats: list[torch.Tensor]  # each (L, T_i, D)
    labels: torch.Tensor  # (N,) class ids
    skipped: list[tuple[str, str]] = field(default_factory=list)
    key: str = ""  # the encoder identity the features came from (checkpoints record it)
    reference: Stats | None = None  # speaker-normalised: statistics for a clip of an unknown speaker
    normalised: str = "none"  # what sera.normalise did to the features ("none": as the cache holds them)
    speech: list[torch.Tensor] | None = None  # each (T_i,) True on speech frames (``vad.pool_speech``; ``speech_masks``)
    stats: list[Stats] | None = None  # speaker-normalised: each clip's speaker statistics (``train.stats_dropout``)

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([f.shape[1] for f in self.feats])

    @property
    def speakers(self) -> list[str]:
        """Each clip's speaker as "corpus/speaker" (two corpora may both have a speaker "03"); an augmented copy
        keeps its clip's."""
        return [f"{u.corpus}/{u.speaker}" for u in self.utts]

    def subset(self, idx: list[int] | np.ndarray) -> "FeatureSet":
        """The clips ``idx``. Per-speaker statistics known (``stats``), the reference becomes that of the
        speakers kept: a fold's training clips must not carry a reference made with its test speakers."""
        stats = None if self.stats is None else [self.stats[i] for i in idx]
        reference = self.reference
        if stats:
            reference = Stats.mean_of(list({id(s): s for s in stats}.values()))
        return FeatureSet([self.utts[i] for i in idx], [self.feats[i] for i in idx], self.labels[list(idx)],
                          key=self.key, reference=reference, normalised=self.normalised,
                          speech=None if self.speech is None else [self.speech[i] for i in idx], stats=stats)

    def __add__(self, other: "FeatureSet") -> "FeatureSet":
        """Pool two sets (stage 1 on several corpora; their labels are not used there)."""
        if self.key != other.key:
            raise ValueError(f"features of two encoders ({self.key}, {other.key}) cannot be pooled")
        if self.normalised != other.normalised:
            raise ValueError(f"features normalised two ways ({self.normalised}, {other.normalised}) cannot be pooled")
        speech = self.speech + other.speech if self.speech is not None and other.speech is not None else None
        stats = self.stats + other.stats if self.stats is not None and other.stats is not None else None
        return FeatureSet(self.utts + other.utts, self.feats + other.feats, torch.cat([self.labels, other.labels]),
                          self.skipped + other.skipped, self.key, self.reference, self.normalised, speech, stats)


def load_feature_set(corpus: Corpus, cache: FeatureCache, progress: bool = False) -> FeatureSet:
    """The corpus's cached features (already frame-rate reduced by the cache) with class ids."""
    utts, feats, skipped = load_features(corpus.utterances, cache, progress)
    index = {c: i for i, c in enumerate(corpus.labels)}
    labels = torch.tensor([index[u.label] for u in utts], dtype=torch.long)
    return FeatureSet(utts, feats, labels, skipped, cache.encoder_key)


def speech_masks(fs: FeatureSet, cache: FeatureCache, vad: VadConfig, audio: AudioConfig | None = None,
                 progress: bool = False) -> FeatureSet:
    """``fs`` with each clip's speech frames (``VadConfig.pool_speech``), found by the VAD on the audio as
    it was encoded. The regions are kept beside the features (``speech-<settings>/<digest>.json``), so the
    VAD runs once per clip and setting."""
    folder = cache.dir / f"speech-{regions_key(vad)}"
    masks = []
    for u, h in zip(tqdm(fs.utts, desc="speech regions", unit="file", disable=not progress), fs.feats):
        digest = file_digest(u.path)
        path = folder / f"{digest}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
        else:
            wave = cache.prepare(load_audio(u.path, audio), digest)
            saved = {"seconds": len(wave) / SAMPLE_RATE,
                     "speech": [[r.start, r.end] for r in speech_regions(wave, vad)]}
            atomic_write_text(path, json.dumps(saved))
        n = h.shape[1]  # frames span the encoded audio: their rate follows from its length
        masks.append(speech_frames(n, n / max(saved["seconds"], 1e-6), [Region(a, b) for a, b in saved["speech"]]))
    return replace(fs, speech=masks)


def collate(fs: FeatureSet, idx: list[int], max_frames: int | None = None, generator: torch.Generator | None = None):
    """Pad a batch: feats (B, L, T, D) float32, mask (B, T) True on real frames, labels (B,), and
    speech (B, T) True on real speech frames (None when ``fs`` has no speech masks).

    With a generator, clips longer than ``max_frames`` are randomly cropped (training), their speech
    masks with them.
    """
    parts, spoken = [], []
    for i in idx:
        h, s = fs.feats[i], fs.speech[i] if fs.speech is not None else None
        if max_frames and h.shape[1] > max_frames and generator is not None:
            start = int(torch.randint(0, h.shape[1] - max_frames + 1, (1,), generator=generator))
            h, s = h[:, start : start + max_frames], s[start : start + max_frames] if s is not None else None
        parts.append(h)
        spoken.append(s)
    T = max(p.shape[1] for p in parts)
    L, _, D = parts[0].shape
    feats = torch.zeros(len(parts), L, T, D)
    mask = torch.zeros(len(parts), T, dtype=torch.bool)
    speech = torch.zeros(len(parts), T, dtype=torch.bool) if fs.speech is not None else None
    for b, (p, s) in enumerate(zip(parts, spoken)):
        feats[b, :, : p.shape[1]] = p.float()
        mask[b, : p.shape[1]] = True
        if speech is not None:
            speech[b, : p.shape[1]] = s
    return feats, mask, fs.labels[idx], speech


def length_batches(lengths: np.ndarray, batch_size: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """Batches of similar lengths (less padding); order of batches shuffled when a generator is given."""
    n = len(lengths)
    order = torch.randperm(n, generator=generator).tolist() if generator is not None else list(range(n))
    chunk = batch_size * 16  # sort within large random chunks: similar lengths, still random batches
    batches = []
    for c in range(0, n, chunk):
        part = sorted(order[c : c + chunk], key=lambda i: lengths[i])
        batches += [part[b : b + batch_size] for b in range(0, len(part), batch_size)]
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches
