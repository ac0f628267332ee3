"""The training loop runs unchanged under torchrun: 2 CPU processes (gloo) train in step."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_two_cpu_processes_train_in_step(tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", str(HERE / "distributed_worker.py"),
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["world"] for i in infos] == [2, 2] and infos[0]["backend"] == "gloo"
    a, b = (load_file(str(tmp_path / f"rank{r}.safetensors")) for r in range(2))
    assert a.keys() == b.keys()
    for k in a:  # each rank saw other batches; gradients were averaged, so the weights agree
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    assert infos[0]["stage1"] == infos[1]["stage1"]  # losses are reduced over ranks before logging
    assert infos[0]["stage2"] == infos[1]["stage2"]
