"""Run by tests/test_distributed.py under ``torchrun --nproc_per_node 2``: both stages on the toy
set, then each rank writes its final weights so the test can check that the ranks agree."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from toy import Killed, kill_after, small_cfg, toy_features

from sera.train import finetune, make_accelerator, pretrain


out = Path(sys.argv[1])
acc = make_accelerator()
fs, cfg = toy_features(n=48), small_cfg()
uninterrupted = pretrain(fs, cfg, 3, 16, progress=False)[2]
saved = out / "state"  # stage 1 is stopped after its first epoch on both ranks, then resumed
try:
    pretrain(fs, cfg, 3, 16, progress=False, log=kill_after(1), resume=saved / "stage1.pt")
except Killed:
    acc.wait_for_everyone()
    kept = sorted(p.name for p in saved.iterdir())
ts, attrs, h1 = pretrain(fs, cfg, 3, 16, progress=False, resume=saved / "stage1.pt")
model, h2 = finetune(fs, fs.subset(range(8)), cfg, 3, 16, 2, init=ts, attrs=attrs, progress=False,
                     resume=saved / "stage2.pt")
acc.wait_for_everyone()
state = {f"classifier.{k}": v.contiguous() for k, v in model.state_dict().items()}
state.update({f"teacher.{k}": v.contiguous() for k, v in ts.teacher.state_dict().items()})
state["centroids"] = attrs.centroids.contiguous()
save_file(state, str(out / f"rank{acc.process_index}.safetensors"))
info = {"rank": acc.process_index, "world": acc.num_processes, "backend": str(acc.state.backend),
        "stage1": h1, "stage2": h2, "device": str(acc.device), "uninterrupted_stage1": uninterrupted,
        "kept_when_killed": kept, "left_at_the_end": sorted(p.name for p in saved.iterdir())}
(out / f"rank{acc.process_index}.json").write_text(json.dumps(info))
torch.distributed.destroy_process_group() if acc.num_processes > 1 else None
