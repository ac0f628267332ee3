"""Whisper at the clip's real length (sera's default) against padded to 30 s (what transformers'
WhisperModel does): encoder time per clip, and the UA of the linear probe and of sera on RAVDESS.

    python bench/whisper_padding.py [--folds N] [--seeds S] [--quick]

Writes bench/results/whisper_padding.json. sera runs on the first N folds (default all 4) with S
seeds (default 3, as bench/adapter.py); real-length runs share their state with adapter.py's
RAVDESS runs, so they resume from it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapter import config, state_dir, summarise  # noqa: E402
from common import save  # noqa: E402

from sera.audio import load_audio  # noqa: E402
from sera.encoders import Encoder  # noqa: E402
from sera.evaluate import cross_validate  # noqa: E402
from sera.pipeline import corpus_and_folds, features  # noqa: E402
from sera.probe import as_matrix, probe_cv, utterance_embeddings  # noqa: E402

TIMED_CLIPS = 40  # encoder time is the median over this many clips, both ways on the same clips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=4, help="sera on the first N folds (the probe always runs on all)")
    ap.add_argument("--seeds", type=int, default=3, help="sera seeds, mean ± std over them (--quick: 1)")
    ap.add_argument("--quick", action="store_true", help="4 speakers, 15 clips each, 1 fold, few epochs: checks the harness only")
    args = ap.parse_args()
    result: dict = {"quick": args.quick, "modes": {}}
    for mode in ("real length", "padded to 30 s"):
        cfg = config("ravdess", {"encoder.whisper_padded": mode != "real length"}, args.seeds, args.quick)
        corpus, folds = corpus_and_folds(cfg)
        if args.quick:  # half of the quick speakers, every 4th clip: padded extraction is 8x slower
            keep = set(corpus.speakers[:4])
            corpus = corpus.subset(u for i, u in enumerate(corpus.utterances) if u.speaker in keep and i % 4 == 0)
            folds = [f for f in folds if any(u.id in f.test_ids for u in corpus.utterances)][:1]
        print(f"{mode}:", flush=True)
        encoder = Encoder(cfg.encoder)
        times = []
        for u in corpus.utterances[:TIMED_CLIPS]:
            wave = load_audio(u.path, cfg.audio)
            t = time.perf_counter()
            encoder([wave])
            times.append((time.perf_counter() - t) / (wave.size / 16_000))
        fs, _ = features(corpus, cfg)
        probe = probe_cv(as_matrix(utterance_embeddings(fs)), fs, folds, len(corpus.labels))
        used = folds[: args.folds]
        t = time.perf_counter()
        tag = "ravdess-full" if mode == "real length" and not args.quick else f"padding-{mode.split()[0]}"
        res = cross_validate(fs, corpus, used, cfg, state=state_dir(tag, args.quick))
        run = summarise(res, {"encoder.whisper_padded": mode != "real length"}, cfg, t)
        result["modes"][mode] = {"encoder_rtf": statistics.median(times), "probe": probe, "sera": run,
                                 "sera_folds": [f.name for f in used]}
        print(f"  encoder real-time factor {statistics.median(times):.4f}; probe UA {probe['ua']:.3f}; "
              f"sera UA {run['ua']['mean']:.3f} ± {run['ua']['std']:.3f} on {len(used)} fold(s), "
              f"{cfg.train.seeds} seed(s)", flush=True)
    print(save("whisper_padding-quick" if args.quick else "whisper_padding", result))


if __name__ == "__main__":
    main()
