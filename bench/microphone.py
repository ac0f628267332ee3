"""A microphone check: RAVDESS's test clips as a laptop would record them, scored by the model trained
on the clean clips (issue goal: within 5 UA of clean, clip protocol).

The laptop chain is ``sera.augment``'s ``laptop`` copy (a small simulated room, a cheap capsule's band,
fan-like noise), drawn once per clip from its content, so the test set is fixed: the same copies on every
machine and run, cached as their own entries. The set is a quarter of RAVDESS (statement 1, repetition 1:
every actor, emotion and intensity; 360 clips), since a simulated room costs about 4x a clip's encoding.
Each fold's model (the ``reproduce`` recipe on RAVDESS's clean clips alone: raw features, probe 0.5; 3 seeds)
scores every test clip twice, clean and through the chain, each alone as ``sera predict`` sees it; the linear
probe baseline, fitted on the same clean clips, likewise. Further variants train stage 2 and the probe on
copies of the training clips too (``train.finetune_augment``, ``--train-augment``, one set of copies per
variant, sets split by ``;``; by default the ``reproduce`` preset's one copy of each clip, then noise, a
telephone band and a simulated room for each; never the laptop chain it is tested on), each paired with the
first by seed and fold.

    python bench/microphone.py [--views laptop] [--train-augment "noise|telephone|room;noise,telephone,room"]
                               [--train-copies swap|add] [--seeds 3] [--jobs 2] [--quick]
    python bench/microphone.py --train-augment "noise|telephone|room" --also \
        data.normalise=speaker --also train.stats_dropout=0.5 --also model.probe_view=reference --name microphone-speaker

``--also`` (``section.name=value``, repeatable) adds one more variant: the last copies variant with these settings.

Writes bench/results/NAME[-quick].json (``--name``, default microphone); runs resume under bench/runs/NAME[-quick]/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RUNS, paired_gains, save, upstream  # noqa: E402

from sera.augment import parse_augmentations  # noqa: E402
from sera.config import CLEAN_CLIPS, REPRODUCE, SeraConfig, parse_sets  # noqa: E402
from sera.evaluate import cross_validate  # noqa: E402
from sera.metrics import metrics  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features, labelled_copies  # noqa: E402
from sera.model.probe import logistic_probe  # noqa: E402
from sera.probe import as_matrix, utterance_embeddings  # noqa: E402


def in_test_set(u) -> bool:
    """The fixed test set: RAVDESS's statement 1, repetition 1 (``03-01-EE-II-01-01-AA``)."""
    return Path(u.path).stem.split("-")[4:6] == ["01", "01"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", default="laptop", help="sera.augment copies to score the test clips through")
    ap.add_argument("--train-augment", default=None,
                    help="copies further variants also train on (train.finetune_augment), one set per variant split "
                    "by ';' (default: the reproduce preset's one, then noise, telephone and room; with --quick room, the "
                    "costliest, alone); '' runs the recipe on clean clips alone")
    ap.add_argument("--train-copies", choices=("add", "swap"), default="swap", help="train.finetune_copies of the "
                    "variants: copies added to the clips, or each epoch reading each clip as itself or one of its copies")
    ap.add_argument("--also", action="append", default=[], metavar="SECTION.NAME=VALUE",
                    help="a further variant: the last copies variant with these settings")
    ap.add_argument("--name", default="microphone", help="results file (bench/results/NAME[-quick].json): another "
                    "keeps the saved variants' file as it is")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, one fold, few epochs: the harness only")
    args = ap.parse_args()
    if args.train_augment is None:
        args.train_augment = "room" if args.quick else f"{REPRODUCE['train.finetune_augment']};noise,telephone,room"
    tag = "-quick" if args.quick else ""
    cfg = SeraConfig.preset("reproduce").updated({**CLEAN_CLIPS, "data.corpus": "ravdess", "train.seeds": args.seeds,
                                                  "train.jobs": args.jobs})  # on clean clips; the variants add copies
    if args.quick:
        cfg = apply_quick(cfg).updated({"train.pretrain_epochs": 1, "train.finetune_epochs": 3})
    corpus, folds = corpus_and_folds(cfg)
    folds = folds[:1] if args.quick else folds
    tested = corpus.subset(u for u in corpus.utterances if any(u.id in f.test_ids for f in folds) and in_test_set(u))
    # the clips some fold trains on: only they need copies (every clip, but with --quick's one fold)
    trained = corpus.subset(u for u in corpus.utterances if any(u.id not in f.test_ids for f in folds))
    fs, _ = features(corpus, cfg)
    tested_ids = {u.id for u in tested.utterances}
    views = {"clean": fs.subset([i for i, u in enumerate(fs.utts) if u.id in tested_ids]),
             **{a.name: features(tested, cfg, augment=a)[0] for a in parse_augmentations(args.views)}}
    variants = {"clean clips": cfg}
    for copies in filter(None, args.train_augment.split(";")):
        swapped = ", swapped" if args.train_copies == "swap" else ""
        variants[f"+ stage 2 on {copies} copies{swapped}"] = cfg.updated(
            {"train.finetune_augment": copies, "train.finetune_copies": args.train_copies})
    if args.also:
        name, last = list(variants.items())[-1]
        variants[f"{name}, {', '.join(args.also)}"] = last.updated(parse_sets(args.also))
    out = {"upstream": upstream(cfg.encoder.name), "seeds": cfg.train.seeds, "folds": [f.name for f in folds],
           "settings": {"normalise": cfg.data.normalise, "probe_weight": cfg.model.probe_weight}, "variants": {}}
    runs = {}
    for name, vcfg in variants.items():
        where = name.replace(" ", "-").replace(",", "+").replace("|", "-or-")
        res = cross_validate(fs, corpus, folds, vcfg, progress=False, report=True, views=views,
                             state=RUNS / f"{args.name}{tag}" / where,
                             copies=labelled_copies(vcfg, trained, progress=False))
        runs[name] = res["runs"]
        out["variants"][name] = {"clean": res["protocols"]["clip"]["ua"], "views": res.get("views", {}),
                                 "train_augment": vcfg.train.finetune_augment}
    key = lambda r: (r["seed"], r["fold"])  # noqa: E731
    base = {key(r): r for r in runs["clean clips"]}
    out["paired"] = {  # each variant with copies against the clean clips' one, paired by seed and fold
        name: {v: paired_gains([r["views"][v]["ua"] - base[key(r)]["views"][v]["ua"] for r in rs]) for v in views}
        for name, rs in runs.items() if name != "clean clips"}
    if args.also:  # the --also variant against the copies variant it changes, paired by seed and fold
        (_, prev), (_, mine) = list(runs.items())[-2:]
        prev = {key(r): r for r in prev}
        out["also_vs_previous"] = {v: paired_gains([r["views"][v]["ua"] - prev[key(r)]["views"][v]["ua"] for r in mine])
                                   for v in views}
    for v in out["variants"].values():  # each view against the same clips recorded clean, paired by seed and fold
        v["vs_clean"] = {name: w["ua"]["mean"] - v["views"]["clean"]["ua"]["mean"] for name, w in v["views"].items()
                         if name != "clean"}

    y, C = fs.labels.numpy(), len(corpus.labels)
    X = as_matrix(utterance_embeddings(fs))
    probe = {name: [] for name in views}
    for fold in folds:  # the probe baseline: fitted on the fold's clean training clips, tested on each view
        test = np.array([u.id in fold.test_ids for u in fs.utts])
        fitted = logistic_probe().fit(X[~test], y[~test])  # once per fold, then each view
        for name, view in views.items():
            rows = [i for i, u in enumerate(view.utts) if u.id in fold.test_ids]
            Xv, yv = as_matrix(utterance_embeddings(view.subset(rows))), view.labels[rows].numpy()
            probe[name].append(metrics(yv, fitted.predict(Xv), C)["ua"])
    out["probe_fold_mean_ua"] = {k: float(np.mean(v)) for k, v in probe.items()}
    print(save(f"{args.name}{tag}", out), flush=True)
    for variant, v in out["variants"].items():
        print(f"sera, {variant}: " + ", ".join(f"{name} {100 * w['ua']['mean']:.1f} ± {100 * w['ua']['std']:.1f}"
                                              for name, w in v["views"].items()) + f" (all test clips clean: "
              f"{100 * v['clean']['mean']:.1f})", flush=True)
    print(f"probe: {out['probe_fold_mean_ua']}; paired: {out.get('paired')}", flush=True)


if __name__ == "__main__":
    main()
