"""On-disk cache of every layer's encoder features, one safetensors file per utterance.

Entries are keyed by the encoder's identity (a folder), the frame-rate reduction training reads
them at and the speech trimming, if any (a subfolder), and the audio file's content hash (a
file), so a changed file or another encoder can never serve stale features. Storing frames
already reduced (``model.frame_stride``, 4 by default) and, optionally, only some layers
(``encoder.layers``) keeps a large encoder's cache a quarter of its full-rate size or less: what
training reads, nothing more. Each file carries a checksum of its tensor, written atomically, and
is verified on read: a truncated or corrupted entry is reported as missing and extracted again,
never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from .audio import load_audio
from .augment import Augmentation
from .config import SAMPLE_RATE, AudioConfig, VadConfig
from .data import Utterance
from .encoders import reduce_frames
from .errors import AudioError, CacheError
from .io import atomic_write, atomic_write_text
from .vad import trim_key, trim_to_speech


def file_digest(path: str | Path) -> str:
    """Content hash of an audio file (the cache key), read in 1 MiB blocks."""
    h = hashlib.blake2b(digest_size=20)
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
    except OSError as e:
        raise AudioError(path, f"cannot read file ({e.strerror or e})") from None
    return h.hexdigest()


def _checksum(t: torch.Tensor) -> str:
    return hashlib.blake2b(t.contiguous().view(torch.uint8).numpy().tobytes(), digest_size=16).hexdigest()


class FeatureCache:
    """``root/features/<encoder key>/stride<s>[-trim-<h>][-aug-<name>-<h>]/<hh>/<digest>.safetensors``: (layers,
    frames, dim) float16, frames averaged ``stride`` at a time (``reduce_frames``) before they are stored. With
    ``trim`` (a ``VadConfig``), each clip is encoded from its first to its last speech (``sera.vad.trim_to_speech``).
    With ``augment``, the entries are of that augmented copy of each clip (``sera.augment``), under the clip's own
    digest: a copy is its own cache entry, and a changed clip or augmentation never serves a stale one."""

    def __init__(self, root: str | Path, encoder_key: str, stride: int = 1, trim: VadConfig | None = None,
                 augment: Augmentation | None = None):
        if stride < 1:
            raise CacheError(f"frame stride must be at least 1, not {stride}")
        self.encoder_dir = Path(root).expanduser() / "features" / encoder_key
        # what was done to a clip before it was encoded, hashed once: every read checks each ("" = not done)
        self.tags = {"trim": trim_key(trim) if trim else "", "augment": augment.key if augment else ""}
        self.dir = self.encoder_dir / "-".join([f"stride{stride}", *filter(None, self.tags.values())])
        self.encoder_key, self.stride, self.trim, self.augment = encoder_key, stride, trim, augment

    def _path(self, digest: str, suffix: str = ".safetensors") -> Path:
        return self.dir / digest[:2] / f"{digest}{suffix}"

    def write_identity(self, identity: dict) -> None:
        path = self.encoder_dir / "encoder.json"
        if not path.exists():
            atomic_write_text(path, json.dumps(identity, indent=2, sort_keys=True, default=str))

    def get(self, digest: str) -> torch.Tensor | None:
        """The cached features, or None when absent, truncated or corrupted."""
        path = self._path(digest)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                hidden = f.get_tensor("hidden")
        except Exception:
            return None
        if (meta.get("checksum") != _checksum(hidden) or meta.get("encoder") != self.encoder_key
                or meta.get("stride") != str(self.stride)
                or any(meta.get(name, "") != tag for name, tag in self.tags.items())):
            return None
        return hidden

    def put(self, digest: str, hidden: torch.Tensor, source: str = "") -> None:
        """Store an encoder output at full frame rate (L, T, D); it is reduced here, in float32."""
        hidden = reduce_frames(hidden.float(), self.stride).to(torch.float16).contiguous()  # (L, T / stride, D)
        meta = {"checksum": _checksum(hidden), "encoder": self.encoder_key, "stride": str(self.stride), "source": source,
                **{name: tag for name, tag in self.tags.items() if tag}}
        atomic_write(self._path(digest), lambda tmp: save_file({"hidden": hidden}, str(tmp), metadata=meta))
        self._path(digest, ".error").unlink(missing_ok=True)

    def prepare(self, wave: np.ndarray, digest: str) -> np.ndarray:
        """What is encoded of a clip: all of it or its speech span when the cache trims, of the clip itself or of
        its augmented copy (drawn from the clip's ``digest``). The copy is made first, as a microphone would,
        and the speech found in it."""
        if self.augment:
            wave = self.augment(wave, digest)
        return trim_to_speech(wave, self.trim) if self.trim else wave

    def has(self, digest: str) -> bool:
        return self.get(digest) is not None

    def mark_failed(self, digest: str, message: str) -> None:
        atomic_write_text(self._path(digest, ".error"), message)

    def failure(self, digest: str) -> str | None:
        path = self._path(digest, ".error")
        return path.read_text() if path.is_file() else None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*.safetensors")) if self.dir.is_dir() else 0


@dataclass
class ExtractReport:
    files: int = 0  # utterances asked for
    cached: int = 0  # already in the cache (resume)
    extracted: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, problem)
    audio_seconds: float = 0.0  # of the extracted files
    encoder_seconds: float = 0.0  # time inside the bare encoder forward
    wall_seconds: float = 0.0
    shares: list[int] = field(default_factory=list)  # files extracted by each process (torchrun)

    def summary(self) -> str:
        lines = [
            f"{self.files} files: {self.extracted} extracted, {self.cached} already cached, {len(self.failed)} failed",
        ]
        if len(self.shares) > 1:
            lines.append(f"{len(self.shares)} processes extracted {' + '.join(map(str, self.shares))}")
        if self.extracted:
            lines.append(
                f"{self.audio_seconds / 60:.1f} min of audio in {self.wall_seconds:.1f} s "
                f"(real-time factor {self.wall_seconds / self.audio_seconds:.4f}; "
                f"bare encoder {self.encoder_seconds / self.audio_seconds:.4f})"
            )
        if self.failed:
            lines.append("Files that could not be used:")
            lines += [f"  {path}: {problem}" for path, problem in self.failed]
        return "\n".join(lines)


def process_share() -> tuple[int, int]:
    """(rank, number of processes) under ``torchrun`` / ``accelerate launch``; (0, 1) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def extract(
    utterances: Iterable[Utterance],
    encoder,
    cache: FeatureCache,
    audio_cfg: AudioConfig | None = None,
    clips_per_batch: int = 16,
    progress: bool = True,
) -> ExtractReport:
    """Fill ``cache`` with ``encoder``'s features for every utterance not cached yet.

    Broken files are skipped and reported at the end; an interrupted run resumes where it
    stopped, since each entry is written atomically as soon as it is computed. Under several
    processes (``torchrun --nproc_per_node N``) each rank encodes every N-th missing file, all
    ranks wait for each other, and every rank returns the same combined report.
    """
    start = time.perf_counter()
    utterances = list(utterances)
    report = ExtractReport(files=len(utterances))
    rank, world = process_share()
    cache.write_identity(encoder.identity)
    todo: list[tuple[Utterance, str]] = []
    for u in utterances:
        try:
            digest = file_digest(u.path)
        except AudioError as e:
            report.failed.append((str(u.path), e.problem))
            continue
        if cache.has(digest):
            report.cached += 1
        else:
            todo.append((u, digest))
    state = None
    if world > 1:  # no rank writes before every rank has listed what is missing: the lists agree,
        from accelerate import PartialState  # so the shares are disjoint and cover them

        state = PartialState(cpu=not torch.cuda.is_available())
        state.wait_for_everyone()
    todo = todo[rank::world]

    # One thread on purpose: decoding and writing cost ~15% of the encoder forward, and on a small
    # CPU, reader/writer threads oversubscribe torch's OpenMP threads and slow the forward far more.
    bar = tqdm(total=len(todo), unit="file", desc="extract", disable=not progress or rank > 0, dynamic_ncols=True,
               mininterval=1.0)
    mine = ExtractReport()  # what this rank did
    for start_i in range(0, len(todo), clips_per_batch):
        batch: list[tuple[Utterance, str, np.ndarray]] = []
        for u, digest in todo[start_i : start_i + clips_per_batch]:
            try:
                batch.append((u, digest, cache.prepare(load_audio(u.path, audio_cfg), digest)))
            except AudioError as e:
                mine.failed.append((str(u.path), e.problem))
                cache.mark_failed(digest, e.problem)
        if batch:
            t = time.perf_counter()
            feats = encoder([w for _, _, w in batch])
            mine.encoder_seconds += time.perf_counter() - t
            for (u, digest, wave), f in zip(batch, feats):
                cache.put(digest, f, str(u.path))
                mine.audio_seconds += len(wave) / SAMPLE_RATE
            mine.extracted += len(batch)
        bar.update(len(todo[start_i : start_i + clips_per_batch]))
        elapsed = time.perf_counter() - start
        bar.set_postfix_str(f"{mine.audio_seconds / 60:.1f} min audio, {mine.audio_seconds / max(elapsed, 1e-9):.0f}x real time")
    bar.close()
    parts = [mine]
    if state is not None:  # every rank waits until the cache is complete, then all get the combined report
        from accelerate.utils import gather_object

        state.wait_for_everyone()
        parts = gather_object([mine])
    for part in parts:
        report.shares.append(part.extracted)
        report.extracted += part.extracted
        report.failed += part.failed
        report.audio_seconds += part.audio_seconds
        report.encoder_seconds = max(report.encoder_seconds, part.encoder_seconds)  # ranks run side by side
    report.wall_seconds = time.perf_counter() - start
    return report


def load_features(
    utterances: Iterable[Utterance], cache: FeatureCache, progress: bool = False,
) -> tuple[list[Utterance], list[torch.Tensor], list[tuple[str, str]]]:
    """(kept utterances, their float16 features, skipped (path, problem)) for training.

    Files that extraction reported broken are skipped with their problem; files never
    extracted are an error, since training on a silent subset would mislead.
    """
    kept, feats, skipped, missing = [], [], [], []
    for u in tqdm(list(utterances), desc="load features", unit="file", disable=not progress):
        try:
            digest = file_digest(u.path)
        except AudioError as e:
            skipped.append((str(u.path), e.problem))
            continue
        hidden = cache.get(digest)
        if hidden is not None:
            kept.append(u)
            feats.append(hidden)
        elif (problem := cache.failure(digest)) is not None:
            skipped.append((str(u.path), problem))
        else:
            missing.append(u)
    if missing:
        raise CacheError(
            f"{len(missing)} utterance(s) have no cached features under {cache.dir} "
            f"(first: {missing[0].path}); run `sera extract` first"
        )
    return kept, feats, skipped
