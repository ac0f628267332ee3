"""Does pooling over the speech alone help? A cheap first answer with the linear probe, in both
protocols, on sera's folds: each clip's time mean over all its frames, over the frames Silero VAD
marks as speech, and over all frames of the clip trimmed to its speech before encoding
(``vad.trim``: Whisper's self-attention then never sees the silence). SAP over speech frames and
sera trained on trimmed clips are the trained versions of the question (issue 17).

    python bench/vad_pooling.py [--corpora ravdess,emodb] [--quick]

Writes bench/results/vad_pooling.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import corpora_args, save, upstream  # noqa: E402

from sera.config import SeraConfig  # noqa: E402
from sera.normalise import normalise  # noqa: E402
from sera.features import speech_masks  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, feature_cache, features  # noqa: E402
from sera.probe import as_matrix, probe_cv  # noqa: E402


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
    masks = [m.numpy() for m in speech_masks(fs, feature_cache(cfg), cfg.vad, cfg.audio).speech]  # what SAP pools
    share = float(np.mean([m.mean() for m in masks]))
    none = sum(not m.any() for m in masks)
    print(f"{name}: {100 * share:.0f}% of frames are speech; {none} clips have none", flush=True)
    trimmed_cfg = cfg.updated({"vad.trim": True})
    start = time.perf_counter()
    trimmed, _ = features(corpus, trimmed_cfg, progress=False)  # extracted once, then cached
    assert [u.id for u in trimmed.utts] == [u.id for u in fs.utts]
    kept = sum(f.shape[1] for f in trimmed.feats) / sum(f.shape[1] for f in fs.feats)
    print(f"{name}: trimming keeps {100 * kept:.0f}% of the frames ({time.perf_counter() - start:.0f} s)", flush=True)
    out = {"speech_share_of_frames": share, "clips_without_speech_frames": int(none), "trimmed_share_of_frames": kept}
    for protocol, norm in (("clip", "none"), ("speaker", "speaker")):
        for pooling, chosen, feats in (("all", None, fs), ("speech", masks, fs), ("trimmed clips' all", None, trimmed)):
            feats = normalise(feats, norm)
            m = probe_cv(time_means(feats, chosen), feats, folds, len(corpus.labels), cfg.seed)
            out[f"{protocol} protocol, {pooling} frames"] = {k: m[k] for k in ("ua", "wa", "f1")}
            print(f"{name} {protocol} protocol, {pooling} frames: UA {100 * m['ua']:.1f}", flush=True)
    return out


def main() -> None:
    corpora, quick = corpora_args(__doc__.splitlines()[0])
    rows = {c: corpus_rows(c, quick) for c in corpora}
    save("vad_pooling-quick" if quick else "vad_pooling",
         {"encoder": upstream(SeraConfig().encoder.name), "probe": rows})


if __name__ == "__main__":
    main()
