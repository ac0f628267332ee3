from dataclasses import replace

import pytest
import torch

from sera.features import Stats
from sera.normalise import clip_stats, normalise
from toy import toy_features


def test_stats_are_the_mean_and_std_over_all_frames():
    feats = [torch.randn(3, t, 5) for t in (4, 7, 9)]
    stats = Stats.of(feats)
    flat = torch.cat(feats, dim=1)  # (L, T, D)
    torch.testing.assert_close(stats.mean, flat.mean(1))
    torch.testing.assert_close(stats.std, flat.std(1, unbiased=False))


def test_each_speaker_is_standardised_and_a_speaker_offset_is_removed():
    fs = toy_features(n=24, D=8)
    fs.utts = [replace(u, speaker=f"s{i // 2 % 4}") for i, u in enumerate(fs.utts)]  # both classes per speaker
    offsets = {s: 5 * torch.randn(8) for s in {u.speaker for u in fs.utts}}  # a voice: one shift per speaker
    fs.feats = [(f.float() + offsets[u.speaker]).half() for u, f in zip(fs.utts, fs.feats)]
    out = normalise(fs, "speaker")
    for s in offsets:
        stats = Stats.of([f.float() for u, f in zip(out.utts, out.feats) if u.speaker == s])
        assert stats.mean.abs().max() < 0.01 and (stats.std - 1).abs().max() < 0.01
    # the learnable cue (feature 0, +2 for class 1) survives, the speaker offsets do not
    means = torch.stack([f.float().mean((0, 1)) for f in out.feats])  # (N, D)
    gap = means[out.labels == 1, 0].mean() - means[out.labels == 0, 0].mean()
    assert gap > 1.0
    assert out.reference is not None and out.reference.mean.shape == (3, 8)
    raw = normalise(fs, "none")  # features untouched; the training speakers' statistics kept (for enrolment)
    assert raw.feats is fs.feats and raw.normalised == "none"
    torch.testing.assert_close(raw.reference.mean, out.reference.mean)
    with pytest.raises(ValueError, match="normalise mode"):
        normalise(fs, "per-corpus")


def test_each_clip_alone_is_standardised_and_its_channel_removed():
    """"utterance": a microphone or a room that shifts and scales a whole clip's features changes nothing, and
    no other clip (no speaker, no training set) is needed, so a clip of an unknown speaker is scored as in training."""
    fs = toy_features(n=6, D=8)
    out = normalise(fs, "utterance")
    for f in out.feats:
        stats = Stats.of([f.float()])
        assert stats.mean.abs().max() < 0.01 and (stats.std - 1).abs().max() < 0.01
    channel = [(f.float() * 3 + 5 * torch.randn(8)).half() for f in fs.feats]  # each clip: its own gain and offset
    again = normalise(replace(fs, feats=channel), "utterance")
    for a, b in zip(out.feats, again.feats):
        torch.testing.assert_close(a.float(), b.float(), atol=0.02, rtol=0.01)  # float16 features
    assert out.normalised == "utterance" and out.reference is None
    one = fs.feats[0].float()
    torch.testing.assert_close(clip_stats("utterance", one, None).apply(one), out.feats[0].float(), atol=0.01, rtol=0.01)
    assert clip_stats("none", one, Stats.of([one])) is None
