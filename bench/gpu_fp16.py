"""Float16 on a GPU against float32 on the CPU: is a checkpoint trained on CPU features safe on CUDA?

sera runs the encoder in float16 on CUDA and float32 on the CPU, and the device is not part of an
encoder's identity. Two steps, since CI and most machines sera is developed on have no GPU:

    # on a machine with CUDA: RAVDESS's fold-0 actors (01-06), both devices, in one process
    python bench/gpu_fp16.py encode --clips DATA/ravdess --encoder MODEL --out DIR
    # here: the linear probe trained on the cache's other actors scores both sets of features
    python bench/gpu_fp16.py score --measured DIR

Writes bench/results/gpu_fp16.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ACTORS = ["01", "02", "03", "04", "05", "06"]  # sera's RAVDESS fold 0


def encode(clips_dir: Path, encoder: str, out: Path) -> None:
    import torch

    from sera.audio import load_audio
    from sera.config import EncoderConfig
    from sera.encoders import Encoder, reduce_frames

    clips = sorted(p for a in ACTORS for p in (clips_dir / f"Actor_{a}").glob("*.flac"))
    waves = [load_audio(p) for p in clips]
    res: dict = {"clips": [p.name for p in clips], "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    feats, means = {}, {}
    for device in ("cuda", "cpu"):
        enc = Encoder(EncoderConfig(name=encoder, device=device))
        res[f"key_{device}"], res[f"dtype_{device}"] = enc.key, str(next(enc.model.parameters()).dtype)
        with torch.inference_mode():
            enc([waves[0]])  # warm-up
            torch.cuda.synchronize()
            t = time.perf_counter()
            feats[device] = [reduce_frames(enc([w])[0], 4).float().cpu() for w in waves]
            torch.cuda.synchronize()
            res[f"encode_seconds_{device}"] = time.perf_counter() - t
        means[device] = np.stack([f.mean(1).numpy() for f in feats[device]])  # (N, L, D)
    rel = np.array([[((g[k] - c[k]).norm() / c[k].norm()).item() for k in range(len(g))]
                    for g, c in zip(feats["cuda"], feats["cpu"])])  # (N, L)
    res["relative_error_per_layer_median"] = np.median(rel, 0).tolist()
    res["relative_error_per_layer_max"] = rel.max(0).tolist()
    res["audio_seconds"] = sum(w.size for w in waves) / 16_000
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "means.npz", cuda=means["cuda"], cpu=means["cpu"])
    (out / "fp16.json").write_text(json.dumps(res, indent=2))


def score(measured: Path) -> None:
    from common import save

    from sera.config import SeraConfig
    from sera.metrics import metrics
    from sera.pipeline import corpus_and_folds, features
    from sera.probe import as_matrix, logistic_probe, utterance_embeddings

    res = json.loads((measured / "fp16.json").read_text())
    means = np.load(measured / "means.npz")
    cfg = SeraConfig().updated({"data.normalise": "none"})
    corpus, _ = corpus_and_folds(cfg)
    fs, key = features(corpus, cfg, progress=False)
    if key != res["key_cpu"]:
        sys.exit(f"the cache's encoder {key} is not the one measured ({res['key_cpu']}): set SERA_ENCODER")
    E, y = as_matrix(utterance_embeddings(fs)), fs.labels.numpy()
    where = {u.path.name: i for i, u in enumerate(fs.utts)}
    order = [where[name] for name in res["clips"]]
    test = np.zeros(len(y), dtype=bool)
    test[order] = True
    clf = logistic_probe(0).fit(E[~test], y[~test])
    rows, ref = {}, clf.predict_proba(as_matrix(means["cpu"]))
    for name, X in (("cpu float32", as_matrix(means["cpu"])), ("cuda float16", as_matrix(means["cuda"]))):
        proba = clf.predict_proba(X)
        rows[name] = {"ua": metrics(y[order], proba.argmax(1), len(corpus.labels))["ua"],
                      "same_label_as_cpu": float((proba.argmax(1) == ref.argmax(1)).mean()),
                      "max_probability_difference": float(np.abs(proba - ref).max())}
        print(name, rows[name])
    print(save("gpu_fp16", {**{k: v for k, v in res.items() if k != "clips"}, "clips": len(order),
                            "probe_trained_on_cache_of_other_actors": rows}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="step", required=True)
    e = sub.add_parser("encode")
    e.add_argument("--clips", type=Path, required=True)
    e.add_argument("--encoder", required=True)
    e.add_argument("--out", type=Path, required=True)
    s = sub.add_parser("score")
    s.add_argument("--measured", type=Path, required=True)
    args = ap.parse_args()
    encode(args.clips, args.encoder, args.out) if args.step == "encode" else score(args.measured)


if __name__ == "__main__":
    main()
