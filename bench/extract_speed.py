"""Extraction speed: the whole pipeline (decode, encoder, write) against the bare encoder forward.

Runs `sera.cache.extract` on a corpus into a fresh cache, then the encoder alone on the same
audio already in memory, in the same process. Usage: python bench/extract_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import sys

from common import measure_extraction, save

from sera.config import SeraConfig
from sera.data import load_corpus


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--corpus", default="ravdess")
    p.add_argument("--quick", action="store_true", help="40 files: checks the harness, not the figures")
    args = p.parse_args()
    cfg = SeraConfig()
    cfg.data.corpus = args.corpus
    utts = load_corpus(cfg.data).utterances
    if args.quick:
        utts = utts[:40]
    result = {"corpus": args.corpus, "encoder": cfg.encoder.name, **measure_extraction(cfg, utts), "quick": args.quick}
    path = save("extract_speed" + ("-quick" if args.quick else ""), result)
    print(f"{len(utts)} files, {result['audio_minutes']:.1f} min of audio ({cfg.encoder.name})")
    print(f"  pipeline      {result['pipeline_seconds']:7.1f} s   real-time factor {result['pipeline_rtf']:.4f}")
    print(f"  bare encoder  {result['bare_encoder_seconds']:7.1f} s   real-time factor {result['bare_encoder_rtf']:.4f}")
    print(f"  pipeline / bare encoder = {result['pipeline_over_bare']:.2f} (goal <= 1.3)")
    print(f"  cache on disk {result['cache_bytes'] / 1e9:.2f} GB")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
