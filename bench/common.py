"""Shared bits of the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path

# SERA_BENCH_RESULTS: another checkout's results folder, so a run of new code adds its part to the same file
RESULTS = Path(os.environ.get("SERA_BENCH_RESULTS") or Path(__file__).resolve().parent / "results")
RUNS = Path(__file__).resolve().parent / "runs"  # resumable run state and feature stores (git-ignored)
# The six emotions RAVDESS and EmoDB share, under one set of names (sera class maps), for cross-corpus runs
SHARED = {"ravdess": "neutral,happy,sad,angry,fearful,disgust",
          "emodb": "neutral,happiness=happy,sadness=sad,anger=angry,fear=fearful,disgust"}


def machine() -> dict[str, object]:
    import torch

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu_cores": os.cpu_count(), "memory_gib": round(mem, 1), "platform": platform.platform(),
        "python": platform.python_version(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        return "unknown"


def upstream(name: str) -> str:
    """An encoder's short name for tables: a folder's name or a hub id's."""
    return Path(name.rstrip("/")).name


def save(name: str, result: dict) -> Path:
    from sera.io import atomic_write_text

    from sera.config import SeraConfig

    result = {"benchmark": name, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": machine(), "upstream": upstream(SeraConfig().encoder.name), **result}
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2))
    return path


def sign_test(gains: list[float]) -> float:
    """Two-sided sign-test p-value of paired gains (ties dropped)."""
    wins, losses = sum(g > 0 for g in gains), sum(g < 0 for g in gains)
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_gains(gains: list[float]) -> dict:
    """How sure a gain is, from its pairs (one per seed and fold): the mean, how many gained, the sign test."""
    return {"pairs": len(gains), "mean_gain": sum(gains) / max(1, len(gains)), "gained": sum(g > 0 for g in gains),
            "sign_test_p": sign_test(gains)}


def paired_runs(base: dict, other: dict) -> dict:
    """``other`` minus ``base`` over the runs (keyed by seed and fold) both have, as ``paired_gains``."""
    return paired_gains([other[k] - base[k] for k in sorted(base.keys() & other.keys())])


def clip_runs(part: dict, weights: tuple[str, ...] = ("0", "0.5")) -> dict[str, dict[str, float]]:
    """Probe weight -> {"seed/fold": clip-protocol test UA} of a probe_fusion ``part``: what ``paired_runs`` pairs."""
    return {at: {f"{c['seed']}/{c['fold']}": c["test"]["clip"][at] for c in part["fold_curves"]} for at in weights}


def measure_extraction(cfg, utts: list) -> dict:
    """The whole extraction pipeline (decode, encoder, frame-rate reduction, write) into a fresh cache,
    then the bare encoder forward on the same audio already in memory, in the same process."""
    import copy
    import tempfile

    from sera.audio import load_audio
    from sera.cache import extract
    from sera.encoders import Encoder
    from sera.pipeline import feature_cache

    cfg = copy.deepcopy(cfg)
    encoder = Encoder(cfg.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.cache_dir = tmp
        cache = feature_cache(cfg, encoder.key)  # frames stored as training reads them (model.frame_stride)
        report = extract(utts, encoder, cache, cfg.audio, progress=False)
        size = cache.size_bytes()
    waves = [load_audio(u.path) for u in utts]
    t = time.perf_counter()
    for i in range(0, len(waves), 16):
        encoder(waves[i : i + 16])
    bare = time.perf_counter() - t
    audio = report.audio_seconds
    return {
        "files": len(utts), "audio_seconds": audio, "audio_minutes": audio / 60, "hidden_states": encoder.num_layers,
        "dim": encoder.dim, "parameters": encoder.num_parameters(), "stride": cfg.model.frame_stride,
        "pipeline_seconds": report.wall_seconds, "pipeline_rtf": report.wall_seconds / audio,
        "encoder_in_pipeline_seconds": report.encoder_seconds,
        "bare_encoder_seconds": bare, "bare_encoder_rtf": bare / audio, "pipeline_over_bare": report.wall_seconds / bare,
        "cache_bytes": size, "cache_mb_per_audio_minute": size / 1e6 / (audio / 60), "cache_bytes_per_second": size / audio,
    }


def corpora_args(description: str):
    """The probe benches' shared command line: ``--corpora a,b`` and ``--quick``; returns (corpora, quick)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--corpora", default="ravdess,emodb")
    ap.add_argument("--quick", action="store_true", help="a few speakers: checks the harness only")
    args = ap.parse_args()
    return args.corpora.split(","), args.quick
