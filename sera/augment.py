"""Augmented copies of a clip: other voices (speed, pitch), other rooms, noise and channels.

Both open problems need the same copies: stage 1 wants more audio than the labelled clips, and a
model that must travel to other microphones and rooms wants to have heard them. Each copy is a
named ``Augmentation`` whose identity (name and parameters) joins the feature cache's identity,
and whose random draw is seeded by that identity and the clip's content hash: the same clip always
gets the same copy, so a copy is extracted once and cached like any clip.

The signal processing is the field's libraries', not ours: audiomentations (pitch, noise, band
limits, equalisers, MP3 through fast-mp3-augment, its pyroomacoustics room simulator) and soxr (speed
perturbation as Kaldi does it: resample and play at the original rate, so tempo and pitch move together).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import soxr

from .config import SAMPLE_RATE, name_list
from .errors import SeraError



@dataclass(frozen=True)
class Augmentation:
    """One kind of copy: ``kind`` names a recipe in ``KINDS``, ``params`` its settings (part of the identity)."""

    name: str  # what a user types (``--augment speed0.9``) and what reports show
    kind: str  # key of KINDS
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        """Short hash of kind and parameters: the cache subfolder's tag, stable across machines."""
        blob = json.dumps({"kind": self.kind, **self.params}, sort_keys=True)
        return f"aug-{self.name}-" + hashlib.blake2b(blob.encode(), digest_size=4).hexdigest()

    def __call__(self, wave: np.ndarray, seed_text: str = "", sr: int = SAMPLE_RATE) -> np.ndarray:
        """The copy of ``wave`` (samples,) float32; ``seed_text`` (the clip's digest) fixes the random draw."""
        seed = int.from_bytes(hashlib.blake2b(f"{self.key}:{seed_text}".encode(), digest_size=8).digest(), "little")
        try:
            with _seeded(seed):
                out = KINDS[self.kind](np.ascontiguousarray(wave, dtype=np.float32), sr, **self.params)
        except ModuleNotFoundError as e:  # audiomentations and pyroomacoustics are the [augment] extra
            raise SeraError(f"augmentation {self.name} needs {e.name}: pip install 'sera[augment]'") from None
        out = np.nan_to_num(np.asarray(out, dtype=np.float32))
        peak = float(np.abs(out).max(initial=0.0))
        return out / peak * 0.99 if peak > 0.99 else out  # no clipping: a copy stays a valid clip


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """audiomentations draws from the global ``random`` and ``np.random``: seed both, then put them back."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _speed(wave: np.ndarray, sr: int, factor: float) -> np.ndarray:
    # played `factor` times faster: the samples as if recorded at sr * factor, brought back to sr
    return soxr.resample(wave, sr * factor, sr)


def _pitch(wave: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    from audiomentations import PitchShift

    lo, hi = sorted((-abs(semitones), abs(semitones)))
    return PitchShift(min_semitones=lo, max_semitones=hi, p=1.0)(wave, sr)


def _noise(wave: np.ndarray, sr: int, min_snr_db: float, max_snr_db: float) -> np.ndarray:
    from audiomentations import AddColorNoise

    return AddColorNoise(min_snr_db=min_snr_db, max_snr_db=max_snr_db, p=1.0)(wave, sr)


def _room(wave: np.ndarray, sr: int, min_rt60: float, max_rt60: float) -> np.ndarray:
    from audiomentations import RoomSimulator

    # image-source model only (no ray tracing), reflections up to order 10: a fraction of a second per clip (order 30
    # took minutes); the tail is cut after about 0.2-0.3 s, shorter than the target RT60 states
    sim = RoomSimulator(min_target_rt60=min_rt60, max_target_rt60=max_rt60, calculation_mode="rt60",
                        use_ray_tracing=False, max_order=10, leave_length_unchanged=True, p=1.0)
    return sim(wave, sr)


def _telephone(wave: np.ndarray, sr: int, rate: int) -> np.ndarray:
    from audiomentations import BandPassFilter

    # a narrow-band channel: 300-3400 Hz, sampled at `rate` and back, 8-bit mu-law on the way
    band = BandPassFilter(min_center_freq=1850.0, max_center_freq=1850.0, min_bandwidth_fraction=1.67,
                          max_bandwidth_fraction=1.67, min_rolloff=24, max_rolloff=24, p=1.0)(wave, sr)
    narrow = soxr.resample(band, sr, rate)
    mu = 255.0
    coded = np.sign(narrow) * np.log1p(mu * np.abs(np.clip(narrow, -1, 1))) / np.log1p(mu)
    coded = np.round(coded * 127) / 127
    decoded = np.sign(coded) * np.expm1(np.abs(coded) * np.log1p(mu)) / mu
    return soxr.resample(decoded.astype(np.float32), rate, sr)[: len(wave)]


def _laptop(wave: np.ndarray, sr: int) -> np.ndarray:
    """A laptop microphone in an office: a small reverberant room, fan noise, a cheap capsule's band."""
    from audiomentations import BandPassFilter

    roomy = _room(wave, sr, 0.3, 0.6)
    band = BandPassFilter(min_center_freq=2000.0, max_center_freq=2500.0, min_bandwidth_fraction=1.5,
                          max_bandwidth_fraction=1.8, p=1.0)(roomy, sr)
    return _noise(band, sr, 15.0, 25.0)


def _mp3(wave: np.ndarray, sr: int, min_bitrate: int, max_bitrate: int) -> np.ndarray:
    from audiomentations import Mp3Compression

    return Mp3Compression(min_bitrate=min_bitrate, max_bitrate=max_bitrate, backend="fast-mp3-augment", p=1.0)(wave, sr)


def _gain(wave: np.ndarray, sr: int, min_db: float, max_db: float) -> np.ndarray:
    # whisper's log-mel is not level-invariant (a clip's level shifts every frame's features), and corpora are
    # recorded at different levels; a copy louder than full scale is brought back under it by Augmentation
    return wave * np.float32(10 ** (random.uniform(min_db, max_db) / 20))


def _channel(wave: np.ndarray, sr: int) -> np.ndarray:
    """Some other microphone somewhere else, drawn anew per clip: a room half the time, a capsule's band and
    colour (high- and low-pass at random corners, a random seven-band equaliser), noise, a low-bitrate codec a
    third of the time. The room, the noise and the codec are copies of their own too; a real device and room
    do several of these things at once."""
    from audiomentations import HighPassFilter, LowPassFilter, SevenBandParametricEQ

    out = _room(wave, sr, 0.2, 0.8) if random.random() < 0.5 else wave
    out = HighPassFilter(min_cutoff_freq=60.0, max_cutoff_freq=400.0, p=1.0)(out, sr)
    out = LowPassFilter(min_cutoff_freq=3000.0, max_cutoff_freq=7500.0, p=1.0)(out, sr)
    out = SevenBandParametricEQ(min_gain_db=-6.0, max_gain_db=6.0, p=1.0)(out, sr)
    out = _noise(out, sr, 10.0, 30.0)
    return _mp3(out, sr, 16, 48) if random.random() < 1 / 3 else out


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "speed": _speed, "pitch": _pitch, "noise": _noise, "room": _room, "telephone": _telephone, "laptop": _laptop,
    "mp3": _mp3, "gain": _gain, "channel": _channel,
}

# The named copies a user asks for: other voices (speed 0.9 / 1.1, pitch), rooms, noise, channels and codecs, levels.
AUGMENTATIONS: dict[str, Augmentation] = {a.name: a for a in [
    Augmentation("speed0.9", "speed", {"factor": 0.9}),
    Augmentation("speed1.1", "speed", {"factor": 1.1}),
    Augmentation("pitch", "pitch", {"semitones": 2.0}),  # a random shift within +-2 semitones per clip
    Augmentation("noise", "noise", {"min_snr_db": 5.0, "max_snr_db": 20.0}),
    Augmentation("room", "room", {"min_rt60": 0.2, "max_rt60": 0.8}),
    Augmentation("telephone", "telephone", {"rate": 8000}),
    Augmentation("laptop", "laptop", {}),  # the microphone check's test chain (bench/microphone.py); not for training
    Augmentation("mp3", "mp3", {"min_bitrate": 8, "max_bitrate": 32}),  # a low-bitrate codec, as streamed or messaged
    Augmentation("gain", "gain", {"min_db": -18.0, "max_db": 6.0}),  # another recording level
    Augmentation("channel", "channel", {}),  # another device and room, several parts drawn at once
]}


def parse_augmentations(text: str) -> list[Augmentation]:
    """``"speed0.9,room"`` -> the named augmentations, in order; "" -> none. Unknown names are an error."""
    names = name_list(text)
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        raise SeraError(f"unknown augmentation(s) {', '.join(unknown)}; known: {', '.join(AUGMENTATIONS)}")
    return [AUGMENTATIONS[n] for n in names]


@dataclass(frozen=True)
class CopySet:
    """One copy of every clip, by one augmentation, or by one of several (``noise|telephone``): each clip gets
    the one its id picks, so a mixed set costs one copy's extraction, not one per kind, and is the same set on
    every machine. A picked copy is the kind's own cached copy, shared with sets that name the kind alone."""

    kinds: tuple[Augmentation, ...]

    @property
    def name(self) -> str:
        return "|".join(a.name for a in self.kinds)

    def pick(self, clip_id: str) -> Augmentation:
        if len(self.kinds) == 1:
            return self.kinds[0]
        h = hashlib.blake2b(f"{self.name}:{clip_id}".encode(), digest_size=8).digest()
        return self.kinds[int.from_bytes(h, "little") % len(self.kinds)]

    def split(self, utterances: list) -> list[tuple[Augmentation, list]]:
        """``utterances`` (anything with an ``id``) grouped by the augmentation each gets; kinds none got left out."""
        parts: dict[str, tuple[Augmentation, list]] = {a.name: (a, []) for a in self.kinds}
        for u in utterances:  # one pick (a hash) per clip
            parts[self.pick(u.id).name][1].append(u)
        return [(a, us) for a, us in parts.values() if us]


def parse_copies(text: str) -> list[CopySet]:
    """``"noise|telephone,room"`` -> two copies of each clip: one with noise or a telephone channel (picked
    per clip), one in a simulated room; "" -> none."""
    return [CopySet(tuple(parse_augmentations(item.replace("|", ",")))) for item in name_list(text)]
