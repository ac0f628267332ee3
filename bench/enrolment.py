"""How many clips of a speaker the speaker route (`Predictor.enrol`, `sera predict --same-speaker`, the
demo's "Enrol this voice") needs before it pays, measured with the linear probe (time mean of every
layer, logistic regression trained on raw features of the training folds).

Each test clip's speaker is enrolled with k of their clips drawn at random (the clip itself may be
among them, as when a user enrols the clips they then classify), and the clip's features are mapped
onto the training speakers' statistics, as an unnormalised checkpoint does. k = 0 is the clip
protocol; "all" uses every clip of the speaker.

    python bench/enrolment.py [--corpora ravdess,emodb] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import corpora_args, save  # noqa: E402

from sera.config import SeraConfig  # noqa: E402
from sera.metrics import metrics  # noqa: E402
from sera.features import Stats  # noqa: E402
from sera.normalise import reference_stats, speaker_of, speaker_stats  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402
from sera.probe import as_matrix, probe_predictions, utterance_embeddings  # noqa: E402

CLIPS = [0, 1, 2, 4, 8, 16, 32, None]  # None: every clip of the speaker


def enrolment_curve(corpus_name: str, quick: bool, seed: int = 0) -> dict:
    cfg = SeraConfig().updated({"data.corpus": corpus_name, "data.normalise": "none"})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg, progress=False)
    E = utterance_embeddings(fs)  # (N, L, D): the probe's input
    y, C = fs.labels.numpy(), len(corpus.labels)
    speaker = [speaker_of(u) for u in fs.utts]
    rng = np.random.default_rng(seed)
    out = {}
    for k in CLIPS:
        pred = np.full(len(y), -1)
        for fold in folds:
            test = np.array([u.id in fold.test_ids for u in fs.utts])
            train_idx, test_idx = np.where(~test)[0], np.where(test)[0]
            ref = reference_stats(speaker_stats(fs.subset(train_idx.tolist())))
            X = E.copy()
            if k != 0:
                for i in test_idx:
                    mine = [j for j in test_idx if speaker[j] == speaker[i]]
                    picked = mine if k is None or k >= len(mine) else rng.choice(mine, k, replace=False).tolist()
                    voice = Stats.of([fs.feats[j] for j in picked])
                    X[i] = ref.restore(voice.apply(fs.feats[i].float())).mean(1).numpy()  # time mean after mapping
            pred[test] = probe_predictions(as_matrix(X), y, ~test, test, seed)
        m = metrics(y, pred, C)
        out["all" if k is None else str(k)] = {key: m[key] for key in ("ua", "wa", "f1")}
        print(f"{corpus_name}: enrolment clips {'all' if k is None else k}: UA {100 * m['ua']:.1f}", flush=True)
    return out


def main() -> None:
    corpora, quick = corpora_args(__doc__.splitlines()[0])
    curves = {c: enrolment_curve(c, quick) for c in corpora}
    save("enrolment-quick" if quick else "enrolment", {"probe_ua_by_enrolment_clips": curves})


if __name__ == "__main__":
    main()
