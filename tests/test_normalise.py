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


def test_stats_dropout_redraws_reference_or_subset_statistics_of_the_raw_clips():
    """train.stats_dropout: a drawn clip comes out as the raw clip standardised with the training speakers'
    reference (as the clip protocol scores it) or with the statistics of some of its own speaker's clips, of
    any size down to one; padding stays zero; a seed repeats the draws."""
    from sera.errors import SeraError
    from sera.features import collate
    from sera.normalise import StatsDropout

    fs = toy_features(n=24, D=8)
    fs.utts = [replace(u, speaker=f"s{i % 4}") for i, u in enumerate(fs.utts)]
    fs.feats = [(f.float() * (1 + i % 4) + 3 * (i % 4)).half() for i, f in enumerate(fs.feats)]  # four voices
    fs.utts[21], fs.utts[22] = replace(fs.utts[21], speaker="pair"), replace(fs.utts[22], speaker="pair")
    fs.utts[23] = replace(fs.utts[23], speaker="alone")
    normalised = normalise(fs, "speaker")
    feats, mask, *_ = collate(normalised, list(range(24)))
    raw = [f.float() for f in fs.feats]
    close = lambda a, b: torch.allclose(a, b, atol=0.03, rtol=0.01)  # noqa: E731 (float16 features)

    out = StatsDropout(normalised, 1.0)(feats, mask, list(range(24)), torch.Generator().manual_seed(0))
    for i in (0, 5, 23):  # every draw is the reference
        t = raw[i].shape[1]
        assert close(out[i, :, :t], normalised.reference.apply(raw[i])) and out[i, :, t:].abs().max() == 0
    dropout = StatsDropout(normalised, 0.0)
    out = dropout(feats, mask, list(range(24)), torch.Generator().manual_seed(0))
    t = raw[23].shape[1]
    assert close(out[23, :, :t], Stats.of([raw[23]]).apply(raw[23]))  # alone: its only subset is itself
    subsets = {"itself": [21], "the other": [22], "both": [21, 22]}  # the pair's clip 21 in every draw
    seen = set()
    for seed in range(40):
        x = dropout(feats[21:22], mask[21:22], [21], torch.Generator().manual_seed(seed))[0, :, : raw[21].shape[1]]
        [name] = [k for k, rows in subsets.items() if close(x, Stats.of([raw[j] for j in rows]).apply(raw[21]))]
        seen.add(name)
    assert seen == set(subsets)
    mixed = StatsDropout(normalised, 0.5)(feats, mask, list(range(24)), torch.Generator().manual_seed(1))
    referenced = [i for i in range(24) if close(mixed[i, :, : raw[i].shape[1]], normalised.reference.apply(raw[i]))]
    assert 4 <= len(referenced) <= 20  # about half the draws
    again = dropout(feats, mask, list(range(24)), torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, out)
    with pytest.raises(SeraError, match="data.normalise=speaker"):
        StatsDropout(normalise(fs, "none"), 0.5)


def test_a_subset_carries_the_reference_of_its_own_speakers():
    """A fold's training clips, cut from features normalised over the whole corpus, keep no trace of the test
    speakers: their reference (what stats dropout's reference draws use) is their own speakers'."""
    from sera.features import collate
    from sera.normalise import StatsDropout, reference_stats, speaker_stats

    fs = toy_features(n=24, D=8)
    fs.utts = [replace(u, speaker=f"s{i % 4}") for i, u in enumerate(fs.utts)]
    fs.feats = [(f.float() * (1 + i % 4) + 3 * (i % 4)).half() for i, f in enumerate(fs.feats)]  # four voices
    normalised = normalise(fs, "speaker")
    train = [i for i, u in enumerate(fs.utts) if u.speaker != "s3"]  # s3, the loudest voice, is tested
    own = reference_stats(speaker_stats(fs.subset(train)))
    sub = normalised.subset(train)
    torch.testing.assert_close(sub.reference.mean, own.mean)
    torch.testing.assert_close(sub.reference.std, own.std)
    assert (normalised.reference.mean - own.mean).abs().max() > 0.5  # the whole corpus's is another
    feats, mask, *_ = collate(sub, list(range(len(sub))))
    out = StatsDropout(sub, 1.0)(feats, mask, list(range(len(sub))), torch.Generator().manual_seed(0))
    raw = fs.feats[train[0]].float()
    assert torch.allclose(out[0, :, : raw.shape[1]], own.apply(raw), atol=0.03, rtol=0.01)
    both = sub + normalised.subset([i for i in range(24) if i not in train])  # pooled: the first set's reference
    torch.testing.assert_close(both.reference.mean, own.mean)


def test_probe_view_reference_shows_clips_as_the_clip_protocol_does():
    """model.probe_view=reference: each speaker-normalised clip restandardised with the reference, which is the
    raw clip standardised with it; a probe fitted there scores a clip of an unknown speaker as a probe fitted on
    the raw clips does (its own standardisation absorbs any one affine map of the features)."""
    from sera.errors import SeraError
    from sera.features import collate
    from sera.model.probe import LayerMeanProbe
    from sera.normalise import probe_view

    fs = toy_features(n=32, D=8)
    fs.utts = [replace(u, speaker=f"s{i // 2 % 4}") for i, u in enumerate(fs.utts)]  # both classes per speaker
    fs.feats = [(f.float() * (1 + i // 2 % 4) + 3 * (i // 2 % 4)).half() for i, f in enumerate(fs.feats)]  # voices
    normalised = normalise(fs, "speaker")
    assert probe_view(normalised, "speaker") is normalised
    view = probe_view(normalised, "reference")
    ref = normalised.reference
    for i in (0, 9, 31):
        torch.testing.assert_close(view.feats[i].float(), ref.apply(fs.feats[i].float()), atol=0.03, rtol=0.01)
    assert view.labels is normalised.labels and view.stats is normalised.stats
    labels = fs.labels.numpy()
    on_view = LayerMeanProbe(3, 8, 2).fit(view.feats, labels)
    on_raw = LayerMeanProbe(3, 8, 2).fit(fs.feats, labels)
    test = toy_features(n=6, D=8, seed=1)  # clips of a speaker neither probe heard
    raw, mask, *_ = collate(test, list(range(6)))
    alone = on_view(ref.apply(raw.float()), mask).softmax(-1)  # (6, 2): each clip as sera predict standardises it
    torch.testing.assert_close(alone, on_raw(raw.float(), mask).softmax(-1), atol=2e-3, rtol=0)
    assert set(alone.argmax(-1).tolist()) == {0, 1}
    on_speaker = LayerMeanProbe(3, 8, 2).fit(normalised.feats, labels)  # fitted on a view the clip never shows
    assert (on_speaker(ref.apply(raw.float()), mask).softmax(-1) - alone).abs().max() > 0.2
    with pytest.raises(SeraError, match="data.normalise=speaker"):
        probe_view(normalise(fs, "none"), "reference")
