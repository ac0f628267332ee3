"""Pictures of results: confusion matrices, layer weights, attention over time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .predict import Prediction  # noqa: E402


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


def attention_figure(wave: np.ndarray, sr: int, pred: Prediction):
    """The waveform with SAP's attention over time: where the pooled vector took its evidence from."""
    fig, ax = plt.subplots(figsize=(8, 2.4))
    t = np.arange(wave.size) / sr
    step = max(1, wave.size // 8000)  # plotting every sample of a long clip is slow and looks the same
    ax.plot(t[::step], wave[::step], color="0.6", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_xlim(0, max(t[-1], 1e-3))
    if pred.attention.size:
        ta = (np.arange(pred.attention.size) + 0.5) / pred.frame_rate
        twin = ax.twinx()
        twin.fill_between(ta, pred.attention, step="mid", color="tab:red", alpha=0.35)
        twin.set_ylabel("SAP attention", color="tab:red")
        twin.set_ylim(0, pred.attention.max() * 1.1)
    ax.set_title("SAP attention over the waveform", fontsize=10)
    fig.tight_layout()
    return fig


def attributes_figure(pred: Prediction):
    """Each frame's local attribute (k-means cluster of the adapter's frames) as a coloured strip."""
    fig, ax = plt.subplots(figsize=(8, 1.6))
    ids = pred.attributes
    if ids.size:
        seconds = ids.size / pred.frame_rate
        ax.imshow(ids[None, :], aspect="auto", cmap="tab20", interpolation="nearest", extent=(0, seconds, 0, 1),
                  vmin=0, vmax=max(19, int(ids.max())))
        for x, k in _runs(ids, pred.frame_rate):
            ax.text(x, 0.5, str(k), ha="center", va="center", fontsize=7)
        ax.set_xlabel("time (s)")
        ax.set_title(f"local attributes over time ({len(set(ids.tolist()))} distinct clusters)")
    else:
        ax.text(0.5, 0.5, "this checkpoint keeps no local attributes", ha="center", va="center")
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def _runs(ids: np.ndarray, rate: float, min_frames: int = 3) -> list[tuple[float, int]]:
    """Centre (s) and id of each run of one cluster long enough to label."""
    out, start = [], 0
    for i in range(1, ids.size + 1):
        if i == ids.size or ids[i] != ids[start]:
            if i - start >= min_frames:
                out.append(((start + i) / 2 / rate, int(ids[start])))
            start = i
    return out


def layer_weights_figure(weights: np.ndarray):
    """WAP's learned softmax weights: which encoder layers the model listens to."""
    fig, ax = plt.subplots(figsize=(4, 2.4))
    ax.bar(range(len(weights)), weights, color="tab:blue")
    ax.set_xticks(range(len(weights)), ["emb"] + [str(i) for i in range(1, len(weights))])
    ax.set_xlabel("encoder layer")
    ax.set_ylabel("weight")
    ax.set_title("WAP layer weights")
    fig.tight_layout()
    return fig


def timeline_figure(pred: Prediction):
    """Class probabilities of each window of a long recording."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    centres = pred.windows.mean(1)
    for c, label in enumerate(pred.labels):
        ax.plot(centres, pred.window_probabilities[:, c], marker="o", ms=3, label=label)
    ax.set_xlabel("time (s, window centre)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    ax.set_title("emotion over time, window by window")
    fig.tight_layout()
    return fig
