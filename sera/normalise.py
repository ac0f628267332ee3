"""Speaker normalisation: standardise each encoder layer's features per speaker.

A frozen encoder's features carry the speaker's voice as much as the emotion, and with a few
dozen training speakers a model cannot learn to tell the two apart. Standardising every
feature per speaker (mean 0, std 1 over all that speaker's frames) leaves what differs between
the speaker's own clips, which is largely what the speaker expresses. It needs only unlabelled
audio of the speaker, so it is applied to test speakers too: the usual speaker-normalised SER
protocol. It assumes each speaker's clips span several emotions, as in an acted corpus.

A single clip of an unknown speaker has no statistics of its own; it is standardised with the
training set's reference statistics instead (mean of all frames, typical within-speaker std),
which works less well: give a few clips of the same speaker where you can.

"utterance" needs no speaker at all: each clip is standardised with its own statistics, in training
and in use alike (cepstral mean and variance normalisation, applied to every encoder layer). It
removes what a microphone, a room or a voice adds to a whole clip, and with it whatever the clip's
average says of the emotion; which of the two weighs more is measured (docs/bench-notes.md).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import replace

import torch

from .config import NORMALISATIONS
from .errors import SeraError
from .features import FeatureSet, Stats



def speaker_of(u) -> tuple[str, str]:
    """Speakers are told apart by corpus too: RAVDESS's "03" and EmoDB's "03" are two people."""
    return u.corpus, u.speaker


def speaker_stats(fs: FeatureSet) -> dict[tuple[str, str], Stats]:
    groups: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
    for u, f in zip(fs.utts, fs.feats):
        groups[speaker_of(u)].append(f)
    return {s: Stats.of(feats) for s, feats in groups.items()}


def reference_stats(per_speaker: dict[tuple[str, str], Stats]) -> Stats:
    """For clips without a speaker: the mean of the speakers' means and of their stds."""
    return Stats.mean_of(list(per_speaker.values()))


def clip_stats(mode: str, feats: torch.Tensor, reference: Stats | None) -> Stats | None:
    """What one clip of an unknown speaker is standardised with (the clip protocol, ``sera predict``): the
    training speakers' ``reference`` ("speaker"), the clip's own statistics ("utterance"), or nothing."""
    if mode == "utterance":
        return Stats.of([feats])
    return reference if mode == "speaker" else None


def normalise(fs: FeatureSet, mode: str) -> FeatureSet:
    """``fs`` with its features standardised per speaker; ``.reference`` set for checkpoints.

    With mode "none" the features stay as they are, and ``.reference`` still records the training
    speakers' statistics: an unnormalised model can then take an enrolled speaker's clips mapped
    onto them (``Predictor.enrol``)."""
    if mode == "none":
        return replace(fs, reference=reference_stats(speaker_stats(fs))) if len(fs) else fs
    if mode not in NORMALISATIONS:
        raise ValueError(f"normalise mode {mode!r}: choose one of {', '.join(NORMALISATIONS)}")
    if fs.normalised != "none":
        raise ValueError(f"features already normalised ({fs.normalised})")
    if mode == "utterance":
        return replace(fs, feats=[Stats.of([f]).apply(f) for f in fs.feats], reference=None, normalised=mode)
    per_speaker = speaker_stats(fs)
    stats = [per_speaker[speaker_of(u)] for u in fs.utts]
    return replace(fs, feats=[s.apply(f) for s, f in zip(stats, fs.feats)], reference=reference_stats(per_speaker),
                   normalised=mode, stats=stats)


def probe_view(fs: FeatureSet, view: str) -> FeatureSet:
    """What the probe is fitted on (``model.probe_view``): ``fs`` as training reads it ("speaker"), or each
    speaker-normalised clip restandardised with the reference, as a clip of an unknown speaker is ("reference").
    A probe fitted on every speaker's own statistics meets another view in the clip protocol, and fails there."""
    if view == "speaker":
        return fs
    if fs.stats is None or fs.reference is None:
        raise SeraError("model.probe_view=reference restandardises speaker-normalised clips; set data.normalise=speaker")
    ref = fs.reference
    return replace(fs, feats=[ref.apply(s.restore(f.float())).to(f.dtype) for s, f in zip(fs.stats, fs.feats)])


class StatsDropout:
    """Training on speaker statistics of every size (``train.stats_dropout``).

    A speaker-normalised model is trained on features standardised with all of a speaker's clips, then
    used on one clip alone, standardised with the training speakers' reference statistics: the clip
    protocol is a view of the features it never saw in training. Here each training clip, drawn anew
    for every batch, is standardised with the reference in a ``share`` of draws (a clip of an unknown
    speaker, as ``sera predict`` sees one), and otherwise with a random subset of its speaker's clips,
    down to one (a few enrolled clips). The subset's size is drawn log-uniformly, so small subsets are
    common. Statistics are recomputed from each clip's sums, in the speaker-normalised features' own
    space: standardising those with a subset's statistics equals standardising the raw features with it.
    """

    def __init__(self, fs: FeatureSet, share: float):
        if fs.stats is None or fs.reference is None:
            raise SeraError("train.stats_dropout: the training features are not standardised per speaker; "
                            "set data.normalise=speaker")
        self.share, self.stats, ref = share, fs.stats, fs.reference
        self.sums = torch.stack([f.double().sum(1) for f in fs.feats])  # (N, L, D) of the normalised frames
        self.squares = torch.stack([f.double().pow(2).sum(1) for f in fs.feats])  # (N, L, D)
        self.frames = torch.tensor([f.shape[1] for f in fs.feats], dtype=torch.float64)  # (N,)
        groups: dict[int, list[int]] = defaultdict(list)  # rows standardised with the same statistics: a speaker
        for i, s in enumerate(fs.stats):  # (its augmented copies, normalised apart, are a speaker of their own)
            groups[id(s)].append(i)
        self.group = {i: rows for rows in groups.values() for i in rows}
        # the reference as an affine map of each speaker's standardised features: (z * std + mean - ref.mean) / ref.std
        self.to_reference = {id(s): (s.std / ref.std, (s.mean - ref.mean) / ref.std) for s in fs.stats}

    def __call__(self, feats: torch.Tensor, mask: torch.Tensor, rows: list[int], generator: torch.Generator
                 ) -> torch.Tensor:
        """feats (B, L, T, D) of ``rows``, standardised per speaker, restandardised as drawn; padding stays 0."""
        scale, shift = [], []
        for i in rows:
            if float(torch.rand((), generator=generator)) < self.share:  # a clip of an unknown speaker
                a, b = self.to_reference[id(self.stats[i])]
            else:  # a random subset of the speaker's clips (the clip itself may be among them)
                group = self.group[i]
                size = int(math.exp(float(torch.rand((), generator=generator)) * math.log(len(group) + 1)))
                picked = torch.tensor(group)[torch.randperm(len(group), generator=generator)[: max(1, size)]]
                sub = Stats.from_sums(self.sums[picked].sum(0), self.squares[picked].sum(0), self.frames[picked].sum())
                a, b = 1 / sub.std, -sub.mean / sub.std
            scale.append(a)
            shift.append(b)
        scale, shift = torch.stack(scale).to(feats.device), torch.stack(shift).to(feats.device)  # (B, L, D)
        out = feats * scale[:, :, None] + shift[:, :, None]
        return out * mask[:, None, :, None].to(out.dtype)
