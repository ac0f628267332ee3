"""Does stage 1 pay once it hears much more audio than the labelled clips, as the method intends?

Stage 1 needs no labels, yet by default it sees only the labelled training clips (3 epochs). Here it
runs for one fixed budget of steps (``train.pretrain_steps``) on three amounts of audio, each fold's
training clips plus:
- 1x: nothing else;
- 3x: their speed-perturbed copies (0.9 and 1.1);
- about 10x: those, five more augmented copies (pitch, noise, room, telephone, laptop) and every clip
  of the other corpus (RAVDESS's audio for EmoDB; labels unused).
A fold's test clips' copies never reach stage 1 (``evaluate.run_fold``). The same fold and seed is also
trained without stage 1, so each arm's gain is paired over seeds x folds: the SAP head alone (probe
weight 0, what stage 1 is for) and with the probe (weight 0.5, what ``make reproduce`` ships), clip
protocol, raw features (the ``reproduce`` preset's settings until 2026-12-07).

    python bench/stage1_audio.py [--corpus emodb] [--steps 200] [--seeds 3] [--jobs 2] [--quick]

Writes bench/results/stage1_audio[-quick].json; runs resume under bench/runs/stage1-audio*/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import cross_validated  # noqa: E402
from common import clip_runs, paired_runs, save  # noqa: E402
from probe_fusion import part  # noqa: E402

from sera.config import RAW_FEATURES, SeraConfig  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features, unlabelled_features  # noqa: E402

OTHER = {"emodb": "ravdess", "ravdess": "emodb"}
SPEED = "speed0.9,speed1.1"
ALL = SPEED + ",pitch,noise,room,telephone,laptop"


def arms(corpus: str, steps: int, quick: bool) -> dict[str, dict]:
    budget = {"train.pretrain_steps": steps}
    arms = {"no stage 1": {"train.stage1": False}, "1x": budget, "3x": {**budget, "train.pretrain_augment": SPEED},
            "10x": {**budget, "train.pretrain_augment": ALL, "train.pretrain_corpora": OTHER[corpus]}}
    return {k: v for k, v in arms.items() if k != "10x"} if quick else arms  # --quick: the harness, in CI's time


def audio_ratio(corpus_name: str, settings: dict, quick: bool) -> float:
    """The audio stage 1 hears (the corpus's clips and whatever the arm adds), over the corpus's own."""
    cfg = SeraConfig().updated({"data.corpus": corpus_name, **settings})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, _ = corpus_and_folds(cfg)
    frames = lambda fs: sum(f.shape[1] for f in fs.feats) if fs is not None else 0  # noqa: E731
    own = frames(features(corpus, cfg, progress=False)[0])
    return (own + frames(unlabelled_features(cfg, True, corpus))) / own


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default="emodb", choices=sorted(OTHER))
    ap.add_argument("--steps", type=int, default=200, help="stage 1 steps in every arm (train.pretrain_steps)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1, help="folds trained at once (train.jobs)")
    ap.add_argument("--quick", action="store_true", help="a few speakers, one fold, few steps: the harness only")
    args = ap.parse_args()
    steps = 4 if args.quick else args.steps
    shared = {**RAW_FEATURES, "model.probe_weight": 0.5, "train.jobs": args.jobs}  # reproduce's until 2026-12-07
    name = f"stage1_audio{'-quick' if args.quick else ''}"
    results: dict[str, dict] = {}
    for arm, settings in arms(args.corpus, steps, args.quick).items():
        settings = {**shared, **settings}
        ratio = audio_ratio(args.corpus, settings, args.quick) if arm != "no stage 1" else 0.0
        tag = f"stage1-audio-{args.corpus}-{arm.replace(' ', '-')}-{steps}"
        r = part(*cross_validated(args.corpus, settings, args.seeds, args.quick, tag))
        runs = clip_runs(r)
        results[arm] = {"audio_over_labelled": ratio, "settings": settings, "seeds": r["seeds"],
                        "head_alone": r["test_fusion"]["clip"]["0"], "shipped": r["test_fusion"]["clip"]["0.5"],
                        "runs": runs, "timing": r["timing"], "wall_minutes": r["wall_minutes"]}
        if arm != "no stage 1":
            base = results["no stage 1"]["runs"]
            results[arm]["gain"] = {"head_alone": paired_runs(base["0"], runs["0"]),
                                    "shipped": paired_runs(base["0.5"], runs["0.5"])}
        save(name, {"corpus": args.corpus, "steps": steps, "protocol": "clip", "arms": results})
        head = results[arm]["head_alone"]
        gain = results[arm].get("gain", {}).get("head_alone")
        print(f"{arm} ({ratio:.1f}x the labelled audio): head alone {100 * head['mean']:.1f} ± {100 * head['std']:.1f}"
              + (f", gain {100 * gain['mean_gain']:+.1f} ({gain['gained']}/{gain['pairs']}, p {gain['sign_test_p']:.3f})"
                 if gain else ""), flush=True)


if __name__ == "__main__":
    main()
