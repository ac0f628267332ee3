"""The training loop runs unchanged under torchrun: 2 CPU processes (gloo) train in step, and resume in step."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import write_audio
from test_hardening import cache_entries, same_up_to_rounding

HERE = Path(__file__).resolve().parent
TORCHRUN = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
needs_torchrun = pytest.mark.skipif(not Path(TORCHRUN).exists(), reason="torchrun not installed")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}


@needs_torchrun
def test_two_cpu_processes_train_in_step(tmp_path):
    proc = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", str(HERE / "distributed_worker.py"),
                           str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["world"] for i in infos] == [2, 2] and infos[0]["backend"] == "gloo"
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for k in a:  # each rank saw other batches; gradients were averaged, so the weights agree
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert infos[0]["stage1"] == infos[1]["stage1"]  # losses are reduced over ranks before logging
    assert infos[0]["stage2"] == infos[1]["stage2"]
    for info in infos:  # each rank kept its own epoch state, resumed from it, and removed it when done
        assert info["kept_when_killed"] == ["stage1.rank0.pt", "stage1.rank1.pt"] and info["left_at_the_end"] == []
        assert info["stage1"] == info["uninterrupted_stage1"]


@needs_torchrun
def test_two_processes_extract_a_share_each_into_the_same_cache(tmp_path, tiny_hubert):
    for i in range(40):
        write_audio(tmp_path / "data" / ("happy" if i % 2 else "sad") / f"spk{i % 4}_{i}.wav", 1.0 + i % 3, seed=i)
    args = ["extract", "--corpus", str(tmp_path / "data"), "--encoder", str(tiny_hubert), "--no-progress"]
    single = subprocess.run([sys.executable, "-m", "sera.cli", *args, "--cache", str(tmp_path / "one")], env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    two = subprocess.run([TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "sera.cli", *args,
                          "--cache", str(tmp_path / "two")], env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("40 files: 40 extracted, 0 already cached, 0 failed") == 1  # rank 0 reports for all
    assert "2 processes extracted 20 + 20" in two.stdout

    a, b = cache_entries(tmp_path / "one"), cache_entries(tmp_path / "two")
    assert len(a) == 40 and a.keys() == b.keys()
    assert all(same_up_to_rounding(a[k], b[k]) for k in a)
