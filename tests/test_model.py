"""Model parts: shapes and padding, WAP weights, SAP statistics, EMA, masking, k-means refresh."""

import copy

import pytest
import torch

from sera.config import ModelConfig
from sera.model import (EmotionClassifier, LocalAttributes, StatisticalAttentivePooling, TeacherStudent,
                        WAPTransformer, WeightedAveragePooling, kmeans, pool_mask, span_mask, weighted_mean_std)

CFG = ModelConfig(width=32, layers=2, heads=4, sap_hidden=16, num_attributes=8, dropout=0.0)


def _batch(B=3, L=4, T=20, D=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, L, T, D, generator=g)
    lengths = torch.tensor([T, T - 7, 5])[:B]
    mask = torch.arange(T)[None] < lengths[:, None]
    return feats, mask


def test_wap_weights_sum_to_one_and_mix_layers():
    wap = WeightedAveragePooling(4)
    with torch.no_grad():
        wap.logits.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    assert wap.weights.sum().item() == pytest.approx(1.0)
    x = torch.randn(2, 4, 5, 3) * torch.tensor([1.0, 10.0, 100.0, 0.1])[None, :, None, None]
    normed = torch.nn.functional.layer_norm(x, (3,))  # each layer brought to one scale first
    torch.testing.assert_close(wap(x), (normed * wap.weights[None, :, None, None]).sum(1))
    raw = WeightedAveragePooling(4, normalise=False)
    torch.testing.assert_close(raw(x), x.mean(1))  # uniform weights at the start
    last = WeightedAveragePooling(4, last_only=True, normalise=False)
    assert torch.equal(last(x), x[:, -1]) and last.weights.tolist() == [0, 0, 0, 1]


def test_backbone_shapes_and_padding_does_not_leak():
    torch.manual_seed(0)
    net = WAPTransformer(CFG, num_layers=4, dim=24).eval()
    feats, mask = _batch()
    out, layers = net(feats, mask)
    assert out.shape == (3, 20, 32) and len(layers) == 2
    # The short clip alone gives the same frames as inside the padded batch.
    alone, _ = net(feats[2:3, :, :5], mask[2:3, :5])
    torch.testing.assert_close(out[2:3, :5], alone, atol=1e-5, rtol=1e-5)
    # Garbage in the padding changes nothing on real frames.
    noisy = feats.clone()
    noisy[~mask.unsqueeze(1).expand_as(feats[..., 0])] = 1e3
    torch.testing.assert_close(net(noisy, mask)[0][mask], out[mask], atol=1e-4, rtol=1e-4)


def test_stochastic_depth_skips_whole_branches_for_some_clips_in_training_only():
    from dataclasses import replace

    net = WAPTransformer(replace(CFG, layers=3, drop_path=0.3), num_layers=4, dim=24)
    assert [b.drop_path for b in net.blocks] == pytest.approx([0.1, 0.2, 0.3])  # deeper blocks more often
    block, branch = net.blocks[2], torch.ones(4000, 2, 3)
    torch.manual_seed(0)
    out = block.skip(branch)
    per_clip = out[:, 0, 0]
    assert torch.equal(out, per_clip[:, None, None].expand_as(out))  # a clip's whole branch, or none of it
    assert per_clip.unique().tolist() == pytest.approx([0.0, 1 / 0.7])  # the kept ones scaled up
    assert (per_clip == 0).float().mean().item() == pytest.approx(0.3, abs=0.03)
    assert out.mean() == pytest.approx(1, abs=0.05)
    assert torch.equal(block.eval().skip(branch), branch)  # no effect outside training


def test_sap_equals_mean_and_std_under_uniform_attention():
    x = torch.randn(2, 10, 6)
    w = torch.full((2, 10), 0.1)
    pooled = weighted_mean_std(x, w)
    torch.testing.assert_close(pooled[:, :6], x.mean(1))
    torch.testing.assert_close(pooled[:, 6:], x.std(1, unbiased=False), atol=1e-4, rtol=1e-4)
    sap = StatisticalAttentivePooling(6, 4)
    with torch.no_grad():
        sap.score[-1].weight.zero_()  # constant scores -> uniform attention over valid frames
    mask = torch.arange(10)[None] < torch.tensor([[10], [4]])
    out = sap(x, mask)
    torch.testing.assert_close(out[1, :6], x[1, :4].mean(0))
    assert sap.attention(x, mask)[1, 4:].sum() == 0


def test_ema_update_formula_and_teacher_gets_no_gradient():
    torch.manual_seed(0)
    model = TeacherStudent(CFG, 4, 24)
    assert not any(p.requires_grad for p in model.teacher.parameters())
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(0.1)
    before_t = copy.deepcopy(model.teacher.state_dict())
    student = copy.deepcopy(model.student.state_dict())
    model.ema_update(0.9)
    for name, t in model.teacher.state_dict().items():
        torch.testing.assert_close(t, 0.9 * before_t[name] + 0.1 * student[name])
    feats, mask = _batch()
    tm = span_mask(mask, 0.5, 3, torch.Generator().manual_seed(0))
    targets, frames = model.teacher_frames(feats, mask)
    ids = torch.randint(0, 8, mask.shape)
    losses = model(feats, mask, tm, targets, ids)
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.proj.weight.grad is not None and model.student.proj.weight.grad.abs().sum() > 0


def test_losses_only_at_masked_frames():
    torch.manual_seed(0)
    model = TeacherStudent(CFG, 4, 24)
    feats, mask = _batch()
    tm = span_mask(mask, 0.5, 3, torch.Generator().manual_seed(1))
    targets, _ = model.teacher_frames(feats, mask)
    ids = torch.randint(0, 8, mask.shape)
    base = model(feats, mask, tm, targets, ids)
    changed_t, changed_ids = targets.clone(), ids.clone()
    unmasked = ~tm
    changed_t[unmasked] += 100.0  # targets where the student was not masked must not matter
    changed_ids[unmasked] = (changed_ids[unmasked] + 1) % 8
    again = model(feats, mask, tm, changed_t, changed_ids)
    for k in base:
        torch.testing.assert_close(base[k], again[k])
    changed_t[tm] += 1.0
    assert model(feats, mask, tm, changed_t, ids)["distill"] > base["distill"]


def test_span_mask_rate_spans_and_padding():
    mask = torch.ones(64, 200, dtype=torch.bool)
    mask[:, 150:] = False
    tm = span_mask(mask, 0.5, 5, torch.Generator().manual_seed(0))
    assert not tm[~mask].any()
    rate = tm[mask].float().mean().item()
    assert 0.3 < rate < 0.55
    short = torch.zeros(1, 10, dtype=torch.bool)
    short[0, :2] = True
    assert span_mask(short, 0.01, 5, torch.Generator().manual_seed(0))[0, :2].any()  # always one span
    runs = (tm[:, 1:] & ~tm[:, :-1]).sum().item()  # starts of masked runs: spans, not single frames
    assert tm.sum().item() / runs >= 4


def test_kmeans_finds_clusters_and_refresh_follows_the_teacher():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(100, 2, generator=g) for c in centres])
    found = kmeans(x, 3, generator=torch.Generator().manual_seed(0))
    assert torch.cdist(centres, found).min(1).values.max() < 0.5
    torch.manual_seed(0)
    model = TeacherStudent(CFG, 4, 24)
    attrs = LocalAttributes(8)
    feats, mask = _batch(T=30)
    attrs.fit(model.teacher_frames(feats, mask)[1][mask], generator=torch.Generator().manual_seed(0))
    before = attrs.assign(model.teacher_frames(feats, mask)[1])
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    model.ema_update(0.0)  # the teacher moves (all the way to the student)
    frames = model.teacher_frames(feats, mask)[1]
    stale = attrs.assign(frames)
    attrs.fit(frames[mask], generator=torch.Generator().manual_seed(0))
    assert attrs.refits == 2
    assert (attrs.assign(frames)[mask] != stale[mask]).any()
    changed = (attrs.assign(frames)[mask] != stale[mask]).float().mean()
    assert attrs.changed == [pytest.approx(float(changed))]  # the refit's record of the moved targets
    assert before.shape == mask.shape


def test_refit_keeps_cluster_ids_when_the_data_drifts_a_little():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(50, 2, generator=g) for c in centres])
    attrs = LocalAttributes(4)
    attrs.fit(x, generator=torch.Generator().manual_seed(0))
    ids = attrs.assign(x)
    attrs.fit(x + 0.5, generator=torch.Generator().manual_seed(123))  # drift; another seed would renumber
    assert torch.equal(attrs.assign(x + 0.5), ids) and attrs.changed == [0.0]


def test_classifier_outputs_and_ablations():
    feats, mask = _batch()
    for cfg in (CFG, ModelConfig(**{**CFG.__dict__, "pooling": "mean", "transformer": False, "layer_pooling": "last"})):
        model = EmotionClassifier(cfg, 4, 24, num_classes=5)
        logits, frames = model(feats, mask)
        assert logits.shape == (3, 5) and frames.shape == (3, 20, 32)
        logits.sum().backward()
        assert model.backbone.proj.weight.grad is not None


def test_pooling_over_speech_frames_only():
    """``vad.pool_speech``: the non-speech frames change nothing pooled, yet the Transformer still sees
    them; a clip without speech pools every real frame rather than nothing."""
    feats, mask = _batch()
    speech = torch.zeros_like(mask)
    speech[0, 4:12] = speech[1, 2:6] = True  # clip 2 has no speech
    assert pool_mask(mask, speech)[2].equal(mask[2]) and pool_mask(mask, speech)[0].sum() == 8
    assert pool_mask(mask, None) is mask
    model = EmotionClassifier(CFG, 4, 24, num_classes=5).eval()
    logits, frames = model(feats, mask, speech=speech)
    pooled = model.head(model.pool(frames[:1, 4:12], mask[:1, 4:12]))  # the speech frames alone, after the backbone
    torch.testing.assert_close(logits[:1], pooled)
    assert not torch.allclose(logits[:1], model(feats, mask)[0][:1], atol=1e-4)  # silence frames moved the pooling
    torch.testing.assert_close(logits[2], model(feats, mask)[0][2])  # no speech: every frame, as without masks
    for cfg in (ModelConfig(**{**CFG.__dict__, "pooling": "mean"}),):
        mean_model = EmotionClassifier(cfg, 4, 24, num_classes=5).eval()
        logits, frames = mean_model(feats, mask, speech=speech)
        torch.testing.assert_close(logits[1], mean_model.head(frames[1, 2:6].mean(0)))


def test_probe_joins_the_head_once_fitted():
    """``model.probe_weight``: until fitted the model is the head alone (training never sees the probe);
    fitted, its probabilities are the weighted average of the head's and the probe's, the probe reads
    each layer's mean over the real frames only, and a class absent from its training data gets none."""
    feats, mask = _batch()
    cfg = ModelConfig(**{**CFG.__dict__, "probe_weight": 0.25})
    model = EmotionClassifier(cfg, 4, 24, num_classes=5).eval()
    head = model.head(model.pool(model.backbone(feats, mask)[0], mask))
    torch.testing.assert_close(model(feats, mask)[0], head)

    g = torch.Generator().manual_seed(1)
    labels = torch.arange(90) % 3  # classes 0-2 of 5
    clips = [torch.randn(4, 6 + i % 5, 24, generator=g) for i in range(90)]
    for clip, y in zip(clips, labels):
        clip[2, :, y] += 3.0  # the class shows in one layer's mean
    model.probe.fit(clips, labels.numpy())
    probe = model.probe(feats, mask).softmax(-1)
    torch.testing.assert_close(model(feats, mask)[0].softmax(-1), 0.75 * head.softmax(-1) + 0.25 * probe)
    assert probe[:, 3:].max() < 1e-6  # classes 3 and 4 were never seen
    test = torch.randn(3, 4, 8, 24, generator=g)
    test[torch.arange(3), 2, :, torch.arange(3)] += 3.0
    padded = torch.cat([test, 100 * torch.ones(3, 4, 4, 24)], 2)  # padding must not move the means
    pad_mask = torch.arange(12)[None].expand(3, -1) < 8
    assert model.probe(padded, pad_mask).argmax(1).tolist() == [0, 1, 2]

    two = EmotionClassifier(cfg, 4, 24, num_classes=2)
    two.probe.fit(clips, (labels > 0).long().numpy())  # scikit-learn keeps one row for two classes
    assert two.probe(padded, pad_mask).argmax(1).tolist() == [0, 1, 1]
