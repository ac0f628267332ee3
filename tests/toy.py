"""A toy feature set (two classes with a learnable cue), a small config, and a stand-in for a kill
after an epoch, for fast training tests."""

import torch

from sera.config import SeraConfig
from sera.data import Utterance
from sera.features import FeatureSet


def toy_features(n=24, L=3, D=16, seed=0) -> FeatureSet:
    g = torch.Generator().manual_seed(seed)
    feats, labels = [], []
    for i in range(n):
        y = i % 2
        h = torch.randn(L, 10 + i % 7, D, generator=g)
        h[:, :, 0] += 2.0 * y  # a learnable cue
        feats.append(h.half())
        labels.append(y)
    utts = [Utterance(f"u{i}", None, str(labels[i]), f"s{i % 4}", "toy", 1.0) for i in range(n)]
    return FeatureSet(utts, feats, torch.tensor(labels))


def small_cfg() -> SeraConfig:
    cfg = SeraConfig()
    cfg.model.width, cfg.model.heads, cfg.model.num_attributes = 32, 4, 8
    cfg.train.pretrain_epochs, cfg.train.finetune_epochs, cfg.train.batch_size = 2, 2, 8
    cfg.train.refresh_every, cfg.train.kmeans_frames = 2, 200
    return cfg


class Killed(Exception):
    """Raised by ``kill_after``: a training stopped after an epoch, its state kept as a kill leaves it."""


def kill_after(epoch: int):
    """A ``log`` callback that stops a training stage once ``epoch`` has ended (its state saved)."""
    def log(record: dict) -> None:
        if record["epoch"] == epoch:
            raise Killed
    return log
