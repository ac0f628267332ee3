"""Local attributes: k-means clusters of the teacher's frame features, used as student targets.

The clusters are refitted as the EMA teacher moves, so the targets follow the representation
they are derived from (as HuBERT's iterations do, but continuously and without labels).
"""

from __future__ import annotations

import torch


def kmeans(x: torch.Tensor, k: int, iters: int = 20, generator: torch.Generator | None = None,
           init: torch.Tensor | None = None) -> torch.Tensor:
    """(N, H) -> (k, H) centroids: k-means++ seeding (or ``init``), then Lloyd iterations.

    Deterministic given the generator.
    """
    x = x.float()
    n = x.shape[0]
    k = min(k, n)
    if init is not None and init.shape == (k, x.shape[1]):
        return _lloyd(x, init.float().clone(), iters)
    centroids = x[torch.randint(n, (1,), generator=generator)]
    d2 = torch.cdist(x, centroids).squeeze(1) ** 2
    for _ in range(1, k):  # k-means++: next centre drawn with probability proportional to squared distance
        probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
        nxt = x[torch.multinomial(probs, 1, generator=generator)]
        centroids = torch.cat([centroids, nxt])
        d2 = torch.minimum(d2, (torch.cdist(x, nxt).squeeze(1)) ** 2)
    return _lloyd(x, centroids, iters)


def _lloyd(x: torch.Tensor, centroids: torch.Tensor, iters: int) -> torch.Tensor:
    k = centroids.shape[0]
    for _ in range(iters):
        ids = torch.cdist(x, centroids).argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, ids, x)
        counts = torch.bincount(ids, minlength=k).unsqueeze(1)
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)  # empty cluster keeps its centre
    return centroids


class LocalAttributes:
    """Holds the current centroids; ``assign`` maps frames (..., H) to cluster ids (...)."""

    def __init__(self, k: int):
        self.k = k
        self.centroids: torch.Tensor | None = None  # (k, H)
        self.refits = 0
        self.changed: list[float] = []  # per refit: share of the fitted frames whose cluster id changed

    def fit(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Refit; later fits start from the current centroids so that cluster ids keep their
        meaning as the teacher moves (otherwise each refit would renumber the student's targets)."""
        before = self.assign(frames) if self.centroids is not None else None
        self.centroids = kmeans(frames, self.k, generator=generator, init=self.centroids)
        if before is not None:
            self.changed.append(float((self.assign(frames) != before).float().mean()))
        self.refits += 1

    def assign(self, frames: torch.Tensor) -> torch.Tensor:
        if self.centroids is None:
            raise RuntimeError("LocalAttributes.assign before fit")
        flat = frames.reshape(-1, frames.shape[-1]).float()
        return torch.cdist(flat, self.centroids.to(flat.device)).argmin(1).reshape(frames.shape[:-1])
