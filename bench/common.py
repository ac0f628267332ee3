"""Shared bits of the benchmark scripts: where results go and what machine made them."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
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


def save(name: str, result: dict) -> Path:
    from sera.io import atomic_write_text

    result = {"benchmark": name, "commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M"),
              "machine": machine(), **result}
    path = RESULTS / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=2))
    return path
