"""UA against training clips: at what data size does the method's head beat a linear probe?

On RAVDESS's speaker-independent folds (the same test clips throughout, clip protocol, the
``reproduce`` recipe's settings: raw features, probe weight 0.5), each fold trains on nested subsets
of its training speakers (25 %, 50 %, 100 %: the smaller a prefix of the larger, in one seeded order),
and once on its training speakers plus every EmoDB speaker (RAVDESS + EmoDB joined, 9 classes, EmoDB
never tested). One training per seed and fold scores three things from the same model: the SAP head
alone, the probe alone (fitted on the same speakers) and their average (what sera ships). A line
of UA against log training clips is fitted per method; where the head's line crosses the probe's
is the data size at which the head alone would win, if the trend held.

    python bench/scaling_data.py [--fractions 0.25,0.5,1] [--no-joint] [--seeds 3] [--jobs 2] [--quick]

Writes bench/results/scaling_data[-quick].json and scaling_data[-quick].png; runs resume under
bench/runs/scaling-data*/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, RUNS, save, upstream  # noqa: E402

import matplotlib  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from sera.config import CLEAN_CLIPS, SeraConfig  # noqa: E402
from sera.data import Corpus, Fold  # noqa: E402
from sera.evaluate import cross_validate  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402

PARTS = {"head alone": "0", "probe alone": "1", "head + probe (shipped)": "0.5"}  # probe weight of each


def config(corpus: str, seeds: int, jobs: int, quick: bool) -> SeraConfig:
    cfg = SeraConfig.preset("reproduce").updated({**CLEAN_CLIPS, "data.corpus": corpus, "train.seeds": seeds,
                                                  "train.jobs": jobs})  # the method's curve, on the clips alone
    if quick:  # a check of the harness: few speakers and epochs
        cfg = apply_quick(cfg).updated({"train.pretrain_epochs": 1, "train.finetune_epochs": 3, "train.seeds": 1})
    return cfg


def nested_speakers(speakers: list[str], fraction: float, seed: int = 0) -> set[str]:
    """The first ``fraction`` of ``speakers`` in one seeded order (at least 2: validation needs one)."""
    order = list(np.random.default_rng(seed).permutation(sorted(speakers)))
    return set(order[: max(2, round(fraction * len(order)))])


def run_point(fs, corpus: Corpus, fold: Fold, keep, cfg: SeraConfig, state: Path) -> list[dict]:
    """Cross-validate one fold on the training clips ``keep`` admits (the test clips always stay):
    each seed's test UA at each probe weight, clip protocol, and how many clips it trained on."""
    rows = [i for i, u in enumerate(fs.utts) if u.id in fold.test_ids or keep(u)]
    sub = fs.subset(rows)
    res = cross_validate(sub, corpus.subset(sub.utts), [fold], cfg, progress=False, state=state, report=False)
    clips = sum(u.id not in fold.test_ids for u in sub.utts)
    return [{"seed": r["seed"], "fold": fold.name, "train_clips": clips, "ua": r["test_fusion"]["clip"]}
            for r in res["runs"]]


def fit(points: list[dict], weight: str) -> tuple[float, float]:
    """UA = a + b * log10(training clips), least squares over every seed and fold."""
    x = np.log10([p["train_clips"] for p in points])
    y = np.array([p["ua"][weight] for p in points])
    b, a = np.polyfit(x, y, 1)
    return float(a), float(b)


def crossing(points: list[dict]) -> float | None:
    """Training clips where the head's line meets the probe's (None if they run parallel or the head
    never catches up: its line is below at every size from here on)."""
    (ah, bh), (ap, bp) = fit(points, PARTS["head alone"]), fit(points, PARTS["probe alone"])
    if bh <= bp:
        return None
    return float(10 ** ((ap - ah) / (bh - bp)))


def summarise(points: list[dict]) -> dict:
    by_size: dict[str, dict] = {}
    for label in sorted({p["label"] for p in points}, key=lambda k: min(p["train_clips"] for p in points if p["label"] == k)):
        mine = [p for p in points if p["label"] == label]
        seeds = sorted({p["seed"] for p in mine})
        by_size[label] = {"train_clips": float(np.mean([p["train_clips"] for p in mine])), **{
            name: {"mean": float(np.mean(per := [np.mean([p["ua"][w] for p in mine if p["seed"] == s]) for s in seeds])),
                   "std": float(np.std(per))} for name, w in PARTS.items()}}
    fits = {name: dict(zip(("a", "b"), fit(points, w))) for name, w in PARTS.items()}
    return {"points": by_size, "fits": fits, "head_meets_probe_at_clips": crossing(points)}


def picture(summary: dict, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4))
    sizes = summary["points"]
    x = np.array([v["train_clips"] for v in sizes.values()])
    for (name, _), colour in zip(PARTS.items(), ("tab:red", "tab:blue", "tab:green")):
        y = np.array([100 * v[name]["mean"] for v in sizes.values()])
        e = np.array([100 * v[name]["std"] for v in sizes.values()])
        ax.errorbar(x, y, yerr=e, marker="o", capsize=3, color=colour, label=name)
        f = summary["fits"][name]
        grid = np.geomspace(x.min() * 0.8, min(max(x.max(), summary["head_meets_probe_at_clips"] or 0), 10 * x.max())
                            * 1.25, 50)  # the trend drawn at most 10x past the data
        ax.plot(grid, 100 * (f["a"] + f["b"] * np.log10(grid)), ls=":", color=colour, lw=1)
    for label, v in sizes.items():
        ax.annotate(label, (v["train_clips"], 100 * v["probe alone"]["mean"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=7)
    if (c := summary["head_meets_probe_at_clips"]) is not None and c <= 10 * x.max():
        ax.axvline(c, color="grey", lw=0.8, ls="--")
        ax.text(c, ax.get_ylim()[0] + 1, f" lines meet at {c:,.0f} clips", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([125, 250, 500, 1000, 2000, 4000, 8000]))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("training clips (log scale)")
    ax.set_ylabel("UA on RAVDESS's test clips (%), clip protocol")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractions", default="0.25,0.5,1", help="shares of each fold's training speakers")
    ap.add_argument("--no-joint", action="store_true", help="leave out RAVDESS + EmoDB joined")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, 1 seed, few epochs: the harness only")
    args = ap.parse_args()
    tag = "-quick" if args.quick else ""
    cfg = config("ravdess", args.seeds, args.jobs, args.quick)
    corpus, folds = corpus_and_folds(cfg)
    fractions = [float(f) for f in args.fractions.split(",")]
    if args.quick:  # one fold, two sizes: the harness in about a minute
        folds, fractions = folds[:1], fractions[-2:]
    fs, _ = features(corpus, cfg)
    points = []
    for fraction in fractions:
        for k, fold in enumerate(folds):
            train = sorted({u.speaker for u in fs.utts if u.id not in fold.test_ids})
            keep = nested_speakers(train, fraction)
            state = RUNS / f"scaling-data{tag}" / f"ravdess-{fraction:g}" / f"fold{k}"
            label = f"{100 * fraction:g}% of RAVDESS"
            points += [{**p, "label": label} for p in run_point(fs, corpus, fold, lambda u: u.speaker in keep, cfg, state)]
            print(f"{label}, fold {fold.name}: head {points[-1]['ua']['0']:.3f}, probe {points[-1]['ua']['1']:.3f}, "
                  f"both {points[-1]['ua']['0.5']:.3f} ({points[-1]['train_clips']} training clips)", flush=True)
    if not args.no_joint:  # every EmoDB speaker joins each RAVDESS fold's training speakers; only RAVDESS is tested
        joint_cfg = config("ravdess+emodb", args.seeds, args.jobs, args.quick)
        joint, _ = corpus_and_folds(joint_cfg)
        jfs, _ = features(joint, joint_cfg)
        for k, fold in enumerate(folds):
            jfold = Fold(fold.name, frozenset(f"ravdess:{i}" for i in fold.test_ids))  # combine() prefixes ids
            state = RUNS / f"scaling-data{tag}" / "ravdess+emodb" / f"fold{k}"
            label = "RAVDESS + EmoDB"
            points += [{**p, "label": label} for p in run_point(jfs, joint, jfold, lambda u: True, joint_cfg, state)]
            print(f"{label}, fold {fold.name}: head {points[-1]['ua']['0']:.3f}, probe {points[-1]['ua']['1']:.3f}, "
                  f"both {points[-1]['ua']['0.5']:.3f} ({points[-1]['train_clips']} training clips)", flush=True)
    summary = summarise(points)
    title = (f"RAVDESS test folds, {upstream(cfg.encoder.name)}, {cfg.train.seeds} seed(s): UA against training clips"
             + (" (quick)" if args.quick else ""))
    picture(summary, RESULTS / f"scaling_data{tag}.png", title)
    print(save(f"scaling_data{tag}", {**summary, "runs": points, "seeds": cfg.train.seeds,
                                      "upstream": upstream(cfg.encoder.name), "settings": {
                                          "normalise": cfg.data.normalise, "probe_weight": cfg.model.probe_weight,
                                          "pretrain_epochs": cfg.train.pretrain_epochs,
                                          "finetune_epochs": cfg.train.finetune_epochs}}), flush=True)
    print(f"head alone meets the probe at {meeting(summary['head_meets_probe_at_clips'], sizes_of(summary))}", flush=True)


def sizes_of(summary: dict) -> float:
    return max(v["train_clips"] for v in summary["points"].values())


def meeting(clips: float | None, largest: float) -> str:
    """Where the fitted lines meet, in words: an extrapolation, so only within 10x of the data is it a number."""
    if clips is None:
        return "no size: the head's line does not climb faster than the probe's"
    if clips > 10 * largest:
        return f"more than 10x the largest training set measured ({largest:,.0f} clips): beyond what the fit can say"
    return f"about {clips:,.0f} training clips (extrapolated from {largest:,.0f})"


if __name__ == "__main__":
    main()
