"""Pictures of results: confusion matrices, layer weights, attention over time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if "ipykernel" not in sys.modules:  # scripts, servers and tests draw off-screen; notebooks keep their inline backend
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .config import SAMPLE_RATE  # noqa: E402
from .vad import frame_times, in_speech  # noqa: E402

if TYPE_CHECKING:  # pictures read a prediction; they need not load the predictor's encoder code
    from .predict import Prediction


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


def shade_speech(ax, speech: np.ndarray, label: bool = True) -> None:
    """Speech regions (Silero VAD) as a pale band behind a time axis: what lies outside is not speech."""
    for i, (a, b) in enumerate(np.asarray(speech).reshape(-1, 2)):
        ax.axvspan(a, b, color="tab:green", alpha=0.12, lw=0, label="speech (VAD)" if label and i == 0 else None)


def _pieces(times: np.ndarray, rate: float) -> list[slice]:
    """Runs of consecutive frames (long audio skips the non-speech between pieces)."""
    breaks = np.flatnonzero(np.diff(times) > 1.5 / rate) + 1
    edges = [0, *breaks.tolist(), times.size]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def attention_figure(wave: np.ndarray, sr: int, pred: Prediction):
    """The waveform with SAP's attention over time: where the pooled vector took its evidence from."""
    fig, ax = plt.subplots(figsize=(8, 2.4))
    t = np.arange(wave.size) / sr
    step = max(1, wave.size // 8000)  # plotting every sample of a long clip is slow and looks the same
    shade_speech(ax, pred.speech)
    ax.plot(t[::step], wave[::step], color="0.6", lw=0.5)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude")
    ax.set_xlim(0, max(t[-1], 1e-3))
    title = "SAP attention over the waveform"
    if pred.attention.size:
        twin = ax.twinx()
        for piece in _pieces(pred.frame_times, pred.frame_rate):
            twin.fill_between(pred.frame_times[piece], pred.attention[piece], step="mid", color="tab:red", alpha=0.35)
        twin.set_ylabel("SAP attention", color="tab:red")
        twin.set_ylim(0, pred.attention.max() * 1.1)
        if pred.speech.size:
            title += f"; {100 * _share_in(pred.attention, pred.frame_times, pred.speech):.0f}% of it on speech"
    if pred.speech.size:
        ax.legend(loc="upper right", fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def _share_in(weights: np.ndarray, times: np.ndarray, regions: np.ndarray) -> float:
    return float(weights[in_speech(times, regions)].sum() / max(weights.sum(), 1e-12))


def _changes_per_second(ids: np.ndarray, times: np.ndarray, regions: np.ndarray) -> float:
    """How often the cluster changes between neighbouring frames inside speech, per second of speech."""
    inside = in_speech(times, regions)
    both = inside[1:] & inside[:-1]
    seconds = float((regions[:, 1] - regions[:, 0]).sum())
    return float((ids[1:] != ids[:-1])[both].sum() / max(seconds, 1e-9))


def attributes_figure(pred: Prediction):
    """Each frame's local attribute (k-means cluster of the adapter's frames) as a coloured strip."""
    return cluster_timeline_figure(pred.attributes, pred.frame_rate, times=pred.frame_times, speech=pred.speech)


def cluster_timeline_figure(ids: np.ndarray, frame_rate: float, wave: np.ndarray | None = None, sr: int = SAMPLE_RATE,
                            title: str = "", times: np.ndarray | None = None, speech: np.ndarray | None = None):
    """Cluster ids over time as a coloured strip (runs of 3+ frames labelled), under the clip's
    log-mel spectrogram when ``wave`` is given; ``times`` places frames of pieces that skip non-speech,
    and ``speech`` regions are outlined, so a change of cluster can be read against the speech."""
    panels = 2 if wave is not None else 1
    fig, axes = plt.subplots(panels, 1, figsize=(8, 1.6 + 2.2 * (panels - 1)), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1][-panels:]})
    ax = axes[-1, 0]
    if wave is not None:
        _spectrogram(axes[0, 0], wave, sr)
    if ids.size:
        times = frame_times(ids.size, frame_rate) if times is None else times
        grid = np.full(int(times[-1] * frame_rate) + 1, np.nan)  # one cell per frame; unscored time stays blank
        grid[np.floor(times * frame_rate).astype(int)] = ids
        ax.imshow(np.ma.masked_invalid(grid)[None, :], aspect="auto", cmap="tab20", interpolation="nearest",
                  extent=(0, grid.size / frame_rate, 0, 1), vmin=0, vmax=max(19, int(ids.max())))
        for piece in _pieces(times, frame_rate):
            for x, k in _runs(ids[piece], frame_rate):
                ax.text(times[piece][0] - 0.5 / frame_rate + x, 0.5, str(k), ha="center", va="center", fontsize=7)
        ax.set_xlabel("time (s)")
        described = f"local attributes over time ({len(set(ids.tolist()))} distinct clusters"
        if speech is not None and len(speech):
            for panel in axes[:, 0]:
                for a, b in np.asarray(speech).reshape(-1, 2):
                    panel.axvline(a, color="white" if panel is not ax else "black", lw=1.2, ls="--")
                    panel.axvline(b, color="white" if panel is not ax else "black", lw=1.2, ls="--")
            described += f"; {_changes_per_second(ids, times, np.asarray(speech)):.1f} changes/s in speech (dashed)"
        axes[0, 0].set_title(f"{title}\n{described})" if title else described + ")", fontsize=10)
    else:
        ax.text(0.5, 0.5, "this checkpoint keeps no local attributes", ha="center", va="center")
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def _spectrogram(ax, wave: np.ndarray, sr: int) -> None:
    import librosa

    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=wave, sr=sr, n_mels=64, hop_length=160), ref=np.max)
    ax.imshow(mel, origin="lower", aspect="auto", extent=(0, wave.size / sr, 0, 64), cmap="magma")
    ax.set_ylabel("mel band")


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
    """Class probabilities of each piece of a long recording, drawn over the time the piece covers;
    the gaps between pieces are non-speech that was skipped."""
    fig, ax = plt.subplots(figsize=(8, 2.6))
    shade_speech(ax, pred.speech, label=False)
    colours = plt.get_cmap("tab10" if len(pred.labels) <= 10 else "tab20")
    for c, label in enumerate(pred.labels):  # one collection per class, however many pieces
        ax.hlines(pred.window_probabilities[:, c], pred.windows[:, 0], pred.windows[:, 1], colors=colours(c % colours.N),
                  lw=2, label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4, loc="upper right")
    how = "speech segment" if pred.speech.size else "window"
    ax.set_title(f"emotion over time, {how} by {how} ({len(pred.windows)})")
    fig.tight_layout()
    return fig


def umap_2d(x: np.ndarray, seed: int = 0, neighbours: int = 15) -> np.ndarray:
    """(N, F) -> (N, 2) UMAP embedding of standardised rows; a fixed seed makes it repeat."""
    import umap

    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    return umap.UMAP(n_neighbors=neighbours, random_state=seed, n_jobs=1).fit_transform(x)


def scatter_by(ax, xy: np.ndarray, groups: list[str], title: str, legend: bool = True) -> None:
    """Points coloured by group, one legend entry per group."""
    names = sorted(set(groups))
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    groups_arr = np.asarray(groups)
    for i, name in enumerate(names):
        m = groups_arr == name
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(i % cmap.N), label=name, alpha=0.8, linewidths=0)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_xticks([])
    ax.set_yticks([])
    if legend:
        ax.legend(fontsize=6, markerscale=2, ncol=2 if len(names) > 8 else 1, loc="best")


def umap_figure(points: dict[str, np.ndarray], colour_by: dict[str, list[str]], seed: int = 0):
    """A grid of UMAP pictures: one row per representation in ``points`` ((N, F) each), one column
    per colouring in ``colour_by`` (e.g. emotion and speaker)."""
    rows, cols = len(points), len(colour_by)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for r, (name, x) in enumerate(points.items()):
        xy = umap_2d(x, seed)
        for c, (what, groups) in enumerate(colour_by.items()):
            scatter_by(axes[r, c], xy, groups, f"{name}, coloured by {what}", legend=r == 0)
    fig.tight_layout()
    return fig


def waveform_spectrogram_figure(wave: np.ndarray, sr: int, title: str = ""):
    """Waveform above its log-mel spectrogram (librosa), on one time axis."""
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 3.6), sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    t = np.arange(wave.size) / sr
    a.plot(t, wave, lw=0.4, color="0.3")
    a.set_ylabel("amplitude")
    a.set_title(title, fontsize=10)
    _spectrogram(b, wave, sr)
    b.set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict], keys: list[str], title: str = "", x: str = "epoch"):
    """Training curves: one line per logged key."""
    fig, ax = plt.subplots(figsize=(5.5, 3))
    for k in keys:
        pts = [(h[x], h[k]) for h in history if k in h]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=k)
    ax.set_xlabel(x)
    ax.set_ylabel("value")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def heatmap_figure(table: np.ndarray, rows: list[str], cols: list[str], title: str, xlabel: str, ylabel: str):
    """A table of shares (e.g. emotion by cluster) as a heat map."""
    fig, ax = plt.subplots(figsize=(min(14, 1.5 + 0.25 * len(cols)), 1.2 + 0.35 * len(rows)))
    im = ax.imshow(table, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.03)
    fig.tight_layout()
    return fig
