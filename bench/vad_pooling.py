"""Does pooling over the speech alone help? A cheap first answer with the linear probe: each clip's
time mean over all its frames against over the frames Silero VAD marks as speech, in both
protocols, on sera's folds. SAP over speech frames and trimming before encoding are the trained
versions of the question (issue 17); this says whether they are worth their cost.

    python bench/vad_pooling.py [--corpora ravdess,emodb] [--quick]

Writes bench/results/vad_pooling.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import corpora_args, save, upstream  # noqa: E402

from sera.audio import load_audio  # noqa: E402
from sera.config import SeraConfig  # noqa: E402
from sera.encoders import Encoder  # noqa: E402
from sera.normalise import normalise  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402
from sera.probe import as_matrix, probe_cv  # noqa: E402
from sera.vad import speech_regions  # noqa: E402


def speech_frames(fs, frame_rate: float, cfg: SeraConfig) -> list[np.ndarray]:
    """(T_i,) whether each cached frame's centre lies in a speech region of its clip."""
    masks = []
    for u, f in zip(fs.utts, fs.feats):
        t = (np.arange(f.shape[1]) + 0.5) / frame_rate
        regions = np.array([(r.start, r.end) for r in speech_regions(load_audio(u.path), cfg.vad)]).reshape(-1, 2)
        masks.append(((t[:, None] >= regions[:, 0]) & (t[:, None] <= regions[:, 1])).any(1))
    return masks


def time_means(fs, masks: list[np.ndarray] | None) -> np.ndarray:
    """(N, L * D): every layer's mean over the chosen frames (all of them where a clip has no speech frame)."""
    rows = []
    for i, f in enumerate(fs.feats):
        f = f.float().numpy()
        keep = masks[i] if masks is not None and masks[i].any() else slice(None)
        rows.append(f[:, keep].mean(1))
    return as_matrix(np.stack(rows))


def corpus_rows(name: str, quick: bool) -> dict:
    cfg = SeraConfig().updated({"data.corpus": name, "data.normalise": "none"})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg, progress=False)
    rate = Encoder.frame_rate / cfg.model.frame_stride
    masks = speech_frames(fs, rate, cfg)
    share = float(np.mean([m.mean() for m in masks]))
    none = sum(not m.any() for m in masks)
    print(f"{name}: {100 * share:.0f}% of frames are speech; {none} clips have none", flush=True)
    out = {"speech_share_of_frames": share, "clips_without_speech_frames": int(none)}
    for protocol, feats in (("clip", fs), ("speaker", normalise(fs, "speaker"))):
        for pooling, chosen in (("all frames", None), ("speech frames", masks)):
            m = probe_cv(time_means(feats, chosen), feats, folds, len(corpus.labels), cfg.seed)
            out[f"{protocol} protocol, {pooling}"] = {k: m[k] for k in ("ua", "wa", "f1")}
            print(f"{name} {protocol} protocol, {pooling}: UA {100 * m['ua']:.1f}", flush=True)
    return out


def main() -> None:
    corpora, quick = corpora_args(__doc__.splitlines()[0])
    rows = {c: corpus_rows(c, quick) for c in corpora}
    save("vad_pooling-quick" if quick else "vad_pooling",
         {"encoder": upstream(SeraConfig().encoder.name), "probe": rows})


if __name__ == "__main__":
    main()
