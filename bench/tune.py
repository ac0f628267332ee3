"""Model selection on validation speakers only: each setting runs every fold, and is judged by the
mean best validation UA (speakers carved out of the training folds), never by the test folds.

    python bench/tune.py --corpus ravdess "model.frame_stride=4" "model.width=128 train.lr=1e-3" ...

Each argument is one setting (space-separated section.name=value pairs; "" is the defaults).
Lines go to bench/results/tune.jsonl; test UA is written too, but only for the record.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, git_commit  # noqa: E402

from sera.config import SeraConfig, parse_sets  # noqa: E402
from sera.evaluate import cross_validate  # noqa: E402
from sera.pipeline import corpus_and_folds, features, unlabelled_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="*", default=[""])
    ap.add_argument("--corpus", default="ravdess")
    ap.add_argument("--folds", type=int, default=0, help="only the first N folds (0: all)")
    args = ap.parse_args()
    base = SeraConfig()
    base.data.corpus = args.corpus
    corpus, folds = corpus_and_folds(base)
    folds = folds[: args.folds] if args.folds else folds
    loaded: dict[tuple[int, str], object] = {}
    for setting in args.settings:
        cfg = base.updated(parse_sets(setting.split()))
        which = (cfg.model.frame_stride, cfg.data.normalise)  # the settings that change the features
        if which not in loaded:
            loaded[which] = features(corpus, cfg, progress=False)[0]
        t0 = time.perf_counter()
        res = cross_validate(loaded[which], corpus, folds, cfg, progress=False,
                             unlabelled=unlabelled_features(cfg, False, corpus))
        line = {"setting": setting, "corpus": args.corpus, "folds": len(folds), "val_ua": res["val_ua"],
                "test_ua": res["ua"]["mean"], "val_fusion": res.get("val_fusion"),
                "per_fold_val": [r["val_ua"] for r in res["runs"]],
                "best_epochs": res["best_epochs"], "minutes": (time.perf_counter() - t0) / 60,
                "s_per_epoch": [res["timing"]["stage1_seconds_per_epoch"], res["timing"]["stage2_seconds_per_epoch"]],
                "commit": git_commit()}
        print(json.dumps(line), flush=True)
        with open(RESULTS / "tune.jsonl", "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
