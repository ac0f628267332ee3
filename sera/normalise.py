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

from collections import defaultdict
from dataclasses import replace
import torch

from .config import NORMALISATIONS
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
    stats = list(per_speaker.values())
    return Stats(torch.stack([s.mean for s in stats]).mean(0), torch.stack([s.std for s in stats]).mean(0))


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
    feats = [per_speaker[speaker_of(u)].apply(f) for u, f in zip(fs.utts, fs.feats)]
    return replace(fs, feats=feats, reference=reference_stats(per_speaker), normalised=mode)
