"""The baselines a user would pick instead of sera, on sera's speaker-independent folds:
eGeMAPS + SVM (openSMILE functionals, the classic SER baseline) and the linear probe on frozen
encoder features (time mean of every layer, logistic regression; SUPERB style), each on raw and
on speaker-normalised inputs, and EmoBox's downstream recipe on the last layer's raw frames
(``sera.probe.emobox_predictions``); within RAVDESS and EmoDB, and across them (train on all
of one corpus, test on all of the other, over the six emotions both share).

    python bench/baselines.py [--quick]

Both baselines are deterministic (no seed changes them), so each figure is one run. Writes
bench/results/baselines.json; eGeMAPS features are kept under bench/runs/egemaps/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from tqdm.auto import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RUNS, SHARED, save  # noqa: E402

from sera.config import SeraConfig  # noqa: E402
from sera.data import Corpus  # noqa: E402
from sera.metrics import metrics  # noqa: E402
from sera.normalise import normalise  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402
from sera.features import FeatureSet  # noqa: E402
from sera.probe import as_matrix, emobox_predictions, probe_predictions, utterance_embeddings  # noqa: E402



def egemaps(corpus: Corpus) -> np.ndarray:
    """(N, 88) eGeMAPS v02 functionals of every utterance, cached per file under bench/runs/egemaps/."""
    import opensmile

    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    store = RUNS / "egemaps" / f"{corpus.name}.npz"
    known = dict(np.load(store)) if store.is_file() else {}
    missing = [u for u in corpus.utterances if u.id.replace("/", "|") not in known]
    for u in tqdm(missing, desc=f"eGeMAPS {corpus.name}", unit="file", disable=not missing):
        known[u.id.replace("/", "|")] = smile.process_file(str(u.path)).to_numpy()[0].astype(np.float32)
    if missing:
        store.parent.mkdir(parents=True, exist_ok=True)
        np.savez(store.with_suffix(".tmp.npz"), **known)
        store.with_suffix(".tmp.npz").replace(store)
    return np.stack([known[u.id.replace("/", "|")] for u in corpus.utterances])


def speaker_standardise(X: np.ndarray, speakers: list[str]) -> np.ndarray:
    """Each speaker's rows to zero mean, unit variance (the utterance-level form of sera.normalise)."""
    X = X.copy()
    for s in set(speakers):
        rows = np.array([x == s for x in speakers])
        X[rows] = (X[rows] - X[rows].mean(0)) / (X[rows].std(0) + 1e-5)
    return X


def svm_predictions(X: np.ndarray, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """RBF SVM, C and gamma chosen by speaker-grouped CV inside the training speakers only."""
    grid = {"svc__C": [0.1, 1.0, 10.0], "svc__gamma": ["scale", 0.01]}
    search = GridSearchCV(make_pipeline(StandardScaler(), SVC(kernel="rbf")), grid, scoring="balanced_accuracy",
                          cv=GroupKFold(n_splits=min(4, len(set(groups[train])))), n_jobs=1)
    return search.fit(X[train], y[train], groups=groups[train]).predict(X[test])


def inputs(corpus_name: str, quick: bool, classes: str = "") -> dict:
    """Per-utterance inputs of both baselines, raw and speaker-normalised, with labels, speakers and folds."""
    cfg = SeraConfig().updated({"data.corpus": corpus_name, "data.classes": classes, "data.normalise": "none"})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg)
    fs_spk = normalise(fs, "speaker")  # what features() returns with data.normalise = "speaker", without a second read
    kept = corpus.subset(fs.utts)  # features() may skip broken files: follow its order
    speakers = [u.speaker for u in fs.utts]
    gem = egemaps(kept)
    return {
        "corpus": kept, "folds": folds, "y": fs.labels.numpy(), "speakers": np.array(speakers),
        "X": {"eGeMAPS + SVM": gem, "eGeMAPS + SVM, speaker-normalised": speaker_standardise(gem, speakers),
              "linear probe": as_matrix(utterance_embeddings(fs)),
              "EmoBox recipe (last layer)": fs,
              "linear probe, speaker-normalised": as_matrix(utterance_embeddings(fs_spk))},
    }


def predict(method: str, X, y: np.ndarray, groups: np.ndarray, train: np.ndarray, test: np.ndarray):
    if isinstance(X, FeatureSet):  # the EmoBox recipe trains on frames
        return emobox_predictions(X, y, train, test)
    if method.startswith("eGeMAPS"):
        return svm_predictions(X, y, groups, train, test)
    return probe_predictions(X, y, train, test)


def within(data: dict) -> dict:
    """Each method over the corpus's folds; predictions pooled over folds as in sera's results."""
    y, C = data["y"], len(data["corpus"].labels)
    out = {}
    for method, X in data["X"].items():
        pred = np.full(len(y), -1)
        for fold in data["folds"]:
            test = np.array([u.id in fold.test_ids for u in data["corpus"].utterances])
            pred[test] = predict(method, X, y, data["speakers"], ~test, test)
        done = pred >= 0
        m = metrics(y[done], pred[done], C)
        out[method] = {k: m[k] for k in ("ua", "wa", "f1")}
        print(f"  {method:38s} UA {m['ua']:.3f}  WA {m['wa']:.3f}  F1 {m['f1']:.3f}", flush=True)
    return out


def across(a: dict, b: dict) -> dict:
    """Train on every utterance of ``a``, test on every utterance of ``b`` (same class list)."""
    assert a["corpus"].labels == b["corpus"].labels
    out = {}
    for method in a["X"]:
        X = a["X"][method] + b["X"][method] if isinstance(a["X"][method], FeatureSet) else \
            np.concatenate([a["X"][method], b["X"][method]])
        y = np.concatenate([a["y"], b["y"]])
        groups = np.concatenate([a["speakers"], b["speakers"]])
        train = np.arange(len(y)) < len(a["y"])
        m = metrics(y[~train], predict(method, X, y, groups, train, ~train), len(a["corpus"].labels))
        out[method] = {k: m[k] for k in ("ua", "wa", "f1")}
        print(f"  {method:38s} UA {m['ua']:.3f}  WA {m['wa']:.3f}  F1 {m['f1']:.3f}", flush=True)
    return out


def emobox_folds(folds_file: Path) -> dict:
    """The linear probe and EmoBox's recipe on EmoBox's own 6 RAVDESS folds (raw features, clip
    protocol), beside the UA EmoBox publishes for other encoders on the same folds."""
    cfg = SeraConfig().updated({"data.corpus": "ravdess", "data.normalise": "none", "data.folds": str(folds_file)})
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg)
    kept = corpus.subset(fs.utts)
    data = {"corpus": kept, "folds": folds, "y": fs.labels.numpy(), "speakers": np.array([u.speaker for u in fs.utts]),
            "X": {"linear probe": as_matrix(utterance_embeddings(fs)), "EmoBox recipe (last layer)": fs}}
    return {"folds": str(folds_file.name), "within": within(data),
            "published_ua": json.loads(folds_file.read_text())["published_ua"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="8 speakers, 2 folds per corpus: checks the harness only")
    args = ap.parse_args()
    result: dict = {"quick": args.quick, "within": {}, "cross_corpus": {}, "shared_classes": SHARED["ravdess"]}
    for name in ("ravdess", "emodb"):
        print(f"{name}:", flush=True)
        result["within"][name] = within(inputs(name, args.quick))
    shared = {name: inputs(name, args.quick, SHARED[name]) for name in ("ravdess", "emodb")}
    for a, b in (("ravdess", "emodb"), ("emodb", "ravdess")):
        print(f"train {a}, test {b} (6 shared emotions):", flush=True)
        result["cross_corpus"][f"{a} -> {b}"] = across(shared[a], shared[b])
    folds_file = Path(SeraConfig().data.root).parent / "folds" / "emobox-ravdess.json"
    if not args.quick and folds_file.is_file():  # EmoBox's folds need every RAVDESS actor
        print("RAVDESS on EmoBox's 6 folds:", flush=True)
        result["emobox_folds"] = emobox_folds(folds_file)
    print(save("baselines-quick" if args.quick else "baselines", result))


if __name__ == "__main__":
    main()
