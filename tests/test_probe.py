import numpy as np

from sera.data import Fold
from sera.probe import as_matrix, probe_cv, utterance_embeddings
from toy import toy_features


def test_probe_finds_a_linear_cue_on_unseen_speakers_and_not_in_noise():
    fs = toy_features(n=48, D=8)  # class 1 has +2 on feature 0; speakers s0..s3
    folds = [Fold(f"s{k}", frozenset(u.id for u in fs.utts if u.speaker == f"s{k}")) for k in range(4)]
    emb = utterance_embeddings(fs)
    assert emb.shape == (48, 3, 8)
    np.testing.assert_allclose(emb[5, 1], fs.feats[5][1].float().mean(0).numpy(), rtol=1e-6)
    res = probe_cv(as_matrix(emb), fs, folds, 2)
    assert res["ua"] > 0.9 and len(res["per_fold_ua"]) == 4
    noise = np.random.default_rng(0).standard_normal((48, 24))  # no cue: about chance
    assert probe_cv(noise, fs, folds, 2)["ua"] < 0.75


def test_the_emobox_recipe_learns_a_toy_cue_and_scores_only_test_clips():
    from sera.probe import emobox_predictions

    fs = toy_features(n=256, D=16)  # lr 1e-4 under its warm-up: EmoBox's 100 epochs want a few hundred clips
    y = fs.labels.numpy()
    test = np.array([u.speaker in ("s2", "s3") for u in fs.utts])  # one speaker per class
    pred = emobox_predictions(fs, y, ~test, test)
    assert pred.shape == (test.sum(),)
    assert (pred == y[test]).mean() >= 0.8  # chance is 0.5
    again = emobox_predictions(fs, y, ~test, test)
    assert (pred == again).all()  # seeded: repeatable on CPU


def test_the_emobox_schedule_is_its_speechbrain_warmup_stepped_after_each_epoch():
    from sera.probe import emobox_lr

    lrs = [emobox_lr(e, 100) for e in range(1, 101)]
    assert lrs[0] == 1e-4 and lrs[1] == 0.0  # Adam's own lr, then the scheduler's step 0
    assert np.isclose(lrs[6], 0.5e-4) and np.isclose(lrs[11], 1e-4)  # warm-up over 10 epochs
    assert np.isclose(lrs[-1], 1e-4 * 2 / 90) and all(a >= b for a, b in zip(lrs[11:], lrs[12:]))  # linear fall
