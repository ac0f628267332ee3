"""Pictures of results: confusion matrices, layer weights, attention over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def confusion_figure(confusion, labels: list[str], title: str = ""):
    cm = np.asarray(confusion, dtype=float)
    rows = cm / cm.sum(1, keepdims=True).clip(min=1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.6 * len(labels)))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{rows[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if rows[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised recall)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall")
    fig.tight_layout()
    return fig


def save_confusion(confusion, labels: list[str], path: str | Path, title: str = "") -> None:
    from .io import atomic_write

    fig = confusion_figure(confusion, labels, title)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
