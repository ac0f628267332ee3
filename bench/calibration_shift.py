"""Can a temperature fitted on the training corpus calibrate another corpus's clips? (issue goal: expected
calibration error <= 0.05 across corpora, clip protocol)

The shipped temperature is fitted on the validation speakers' clean clips. Two ways to fit it for a shift,
both on what training has, never the test corpus:
- **with copies**: the validation clips and their augmented copies (the recipe's ``train.finetune_augment``
  copies; Tomani et al. 2021 fit on perturbed validation data);
- **by distance**: a temperature that grows with the clip's domain distance (``sera.domain``, fitted on the
  fitting speakers' clips), ``log T = a + b log d``, fitted on the same clips: farther clips, softer
  probabilities (in the spirit of density-aware calibration, Tomani et al. 2023).

Each seed trains the ``reproduce`` recipe on all of one corpus (validation speakers carved from it; the probe
fitted on the fitting speakers) and scores the other corpus's clips, each alone, over the 6 shared emotions.

    python bench/calibration_shift.py [--seeds 3] [--quick]

Writes bench/results/calibration_shift[-quick].json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import save  # noqa: E402

from sera.calibrate import TEMPERATURES, fit_temperature, temper  # noqa: E402
from sera.config import SeraConfig  # noqa: E402
from sera.domain import DomainCheck  # noqa: E402
from sera.evaluate import each_alone, fit_fold  # noqa: E402
from sera.metrics import reliability  # noqa: E402
from sera.pipeline import apply_quick, cross_corpus, labelled_copies  # noqa: E402


def temper_by_distance(probs: np.ndarray, d: np.ndarray, a: float, b: float) -> np.ndarray:
    """Each clip's probabilities under its own temperature, exp(a) * d ** b (``temper`` broadcasts a column)."""
    return temper(probs, np.exp(a + b * np.log(np.maximum(d, 1e-3)))[:, None])


def fit_by_distance(probs: np.ndarray, d: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) on a grid minimising the negative log-likelihood of ``y``."""
    best = (np.inf, 0.0, 0.0)
    for b in np.linspace(-1.0, 3.0, 41):
        for a in np.log(TEMPERATURES[::4]):
            q = temper_by_distance(probs, d, a, b)
            nll = -np.log(np.clip(q[np.arange(len(y)), y], 1e-12, 1.0)).mean()
            best = min(best, (nll, a, b))
    return best[1], best[2]


def one(source: str, target: str, seed: int, quick: bool) -> dict:
    cfg = SeraConfig.preset("reproduce").updated({"data.corpus": source, "data.test_corpus": target, "seed": seed})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, (fold,), fs = cross_corpus(cfg, progress=False)
    copies = labelled_copies(cfg, corpus, progress=False)
    f = fit_fold(fs, fold, cfg, len(corpus.labels), progress=False, copies=copies)
    held = set(f.val_idx)
    fitting = [i for i in f.train_idx if i not in held]
    check = DomainCheck.fit([fs.feats[i] for i in fitting], [fs.utts[i].speaker for i in fitting])
    val_ids = {fs.utts[i].id for i in f.val_idx}
    # the validation clips' copies alone, raw as fs's clips are (each_alone standardises them; training's come
    # standardised per speaker)
    val_copies = labelled_copies(cfg.updated({"data.normalise": "none"}),
                                 corpus.subset(u for u in corpus.utterances if u.id in val_ids), progress=False)
    test_idx = [i for i, u in enumerate(fs.utts) if u.id in fold.test_ids]
    train = fs.subset(f.train_idx)
    clips = {"validation": [fs.feats[i] for i in f.val_idx], "validation copies": val_copies.feats,
             "test": [fs.feats[i] for i in test_idx]}
    y = {"validation": fs.labels[f.val_idx].numpy(), "validation copies": val_copies.labels.numpy(),
         "test": fs.labels[test_idx].numpy()}
    p = {k: each_alone(f.model, v, train, cfg.data.normalise).numpy() for k, v in clips.items()}
    d = {k: np.array([check.distance(x) for x in v]) for k, v in clips.items()}
    both = {k: np.concatenate([m["validation"], m["validation copies"]]) for k, m in (("p", p), ("d", d), ("y", y))}
    t_clean, t_copies = fit_temperature(p["validation"], y["validation"]), fit_temperature(both["p"], both["y"])
    a, b = fit_by_distance(both["p"], both["d"], both["y"])
    yt, pt = y["test"], p["test"]
    return {
        "source": source, "target": target, "seed": seed, "threshold": check.threshold,
        "accuracy": {k: float((p[k].argmax(1) == y[k]).mean()) for k in p},
        "median_distance": {k: float(np.median(v)) for k, v in d.items()},
        "temperature": {"clean": t_clean, "with copies": t_copies, "by distance": [float(np.exp(a)), float(b)]},
        "test_ece": {"as trained": reliability(yt, pt)["ece"], "clean": reliability(yt, temper(pt, t_clean))["ece"],
                     "with copies": reliability(yt, temper(pt, t_copies))["ece"],
                     "by distance": reliability(yt, temper_by_distance(pt, d["test"], a, b))["ece"]},
        "test_confidence_by_distance": float(temper_by_distance(pt, d["test"], a, b).max(1).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a few speakers and epochs: checks the harness only")
    args = ap.parse_args()
    seeds = 1 if args.quick else args.seeds
    shipped = SeraConfig.preset("reproduce")  # how its features are standardised, for the report
    settings = {"data.normalise": shipped.data.normalise, "train.stats_dropout": shipped.train.stats_dropout}
    runs = []
    for source, target in (("ravdess", "emodb"), ("emodb", "ravdess")):
        for seed in range(seeds):
            runs.append(one(source, target, seed, args.quick))
            r = runs[-1]
            print(f"{source} -> {target} seed {seed}: accuracy {r['accuracy']}, ECE {r['test_ece']}", flush=True)
            save(f"calibration_shift{'-quick' if args.quick else ''}", {"settings": settings, "runs": runs})
    for source, target in (("ravdess", "emodb"), ("emodb", "ravdess")):
        mine = [r for r in runs if r["source"] == source]
        print(f"{source} -> {target}: test ECE " + ", ".join(
            f"{k} {np.mean([r['test_ece'][k] for r in mine]):.3f}" for k in mine[0]["test_ece"]))


if __name__ == "__main__":
    main()
