"""Extraction speed: the whole pipeline (decode, encoder, write) against the bare encoder forward.

Runs `sera.cache.extract` on a corpus into a fresh cache, then the encoder alone on the same
audio already in memory, in the same process. Usage: python bench/extract_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

from common import save

from sera.audio import load_audio
from sera.cache import FeatureCache, extract
from sera.config import SeraConfig
from sera.data import load_corpus
from sera.encoders import Encoder


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
    encoder = Encoder(cfg.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp, encoder.key)
        report = extract(utts, encoder, cache)
        size = cache.size_bytes()
    waves = [load_audio(u.path) for u in utts]
    t = time.perf_counter()
    for i in range(0, len(waves), 16):
        encoder(waves[i : i + 16])
    bare = time.perf_counter() - t
    audio = report.audio_seconds
    result = {
        "corpus": args.corpus, "encoder": cfg.encoder.name, "files": len(utts), "audio_minutes": audio / 60,
        "pipeline_seconds": report.wall_seconds, "pipeline_rtf": report.wall_seconds / audio,
        "encoder_in_pipeline_seconds": report.encoder_seconds,
        "bare_encoder_seconds": bare, "bare_encoder_rtf": bare / audio,
        "pipeline_over_bare": report.wall_seconds / bare,
        "cache_bytes": size, "cache_mb_per_audio_minute": size / 1e6 / (audio / 60),
        "quick": args.quick,
    }
    path = save("extract_speed" + ("-quick" if args.quick else ""), result)
    print(f"{len(utts)} files, {audio / 60:.1f} min of audio ({cfg.encoder.name})")
    print(f"  pipeline      {report.wall_seconds:7.1f} s   real-time factor {result['pipeline_rtf']:.4f}")
    print(f"  bare encoder  {bare:7.1f} s   real-time factor {result['bare_encoder_rtf']:.4f}")
    print(f"  pipeline / bare encoder = {result['pipeline_over_bare']:.2f} (goal <= 1.3)")
    print(f"  cache on disk {size / 1e9:.2f} GB")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
