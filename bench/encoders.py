"""The encoder table: one row per upstream (whisper-tiny.en, whisper-base, a HuBERT-large-sized
random config), each measured in the same run on this machine.

- extraction: the whole pipeline (decode, encoder, frame-rate reduction, write) against the bare
  encoder forward on the same clips, and the cache's bytes per second of audio as stored (stride 4,
  every layer), with what an IEMOCAP-sized corpus (7 h) then takes, also with every other layer;
- the linear probe (time mean of every layer, logistic regression) on RAVDESS and EmoDB folds,
  on raw features (what a single clip of an unknown speaker gets) and speaker-normalised ones;
- predict latency of a 4 s clip (encoder + adapter + head; the head's weights do not change it).

    python bench/encoders.py [--quick]

    python bench/encoders.py --sera whisper-base [--seeds 3]

The second form adds sera's own UA (RAVDESS, 4 folds, speaker-normalised and not) for the named
encoders to the saved table; it takes about 15 minutes per seed and setting on 2 cores and
resumes from bench/runs/encoders/ when interrupted.

The HuBERT-large-sized model has random weights (the hub is unreachable here): its speed and
cache size are real, its accuracy would mean nothing, so it gets no probe or sera row.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, RUNS, measure_extraction, save  # noqa: E402

from sera.audio import load_audio  # noqa: E402
from sera.checkpoint import save_checkpoint  # noqa: E402
from sera.config import SeraConfig  # noqa: E402
from sera.data import load_corpus  # noqa: E402
from sera.evaluate import cross_validate  # noqa: E402
from sera.encoders import Encoder  # noqa: E402
from sera.model import EmotionClassifier  # noqa: E402
from sera.normalise import normalise  # noqa: E402
from sera.provenance import code_version  # noqa: E402
from sera.pipeline import apply_quick, corpus_and_folds, features  # noqa: E402
from sera.predict import Predictor  # noqa: E402
from sera.probe import as_matrix, probe_cv, utterance_embeddings  # noqa: E402

SHARED_MODELS = Path(__file__).resolve().parents[2] / "shared" / "models"
IEMOCAP_SECONDS = 7 * 3600  # the issue's yardstick for a cache that scales


def hubert_large_sized(folder: Path, layers: int = 24) -> Path:
    """HuBERT large's shape (24 layers of 1024, 25 hidden states) with random weights."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    if not (folder / "config.json").is_file():
        torch.manual_seed(0)
        cfg = HubertConfig(hidden_size=1024, num_hidden_layers=layers, num_attention_heads=16, intermediate_size=4096,
                           feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True)
        HubertModel(cfg).eval().save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(folder)
    return folder


def extraction(cfg: SeraConfig, files: int) -> dict:
    """Pipeline against bare encoder on the first ``files`` RAVDESS clips, the cache's size, and what a
    7-hour corpus would take, with every hidden state and with every other one."""
    e = measure_extraction(cfg, load_corpus(cfg.data).utterances[:files])
    every_other = e["cache_bytes_per_second"] * len(range(0, e["hidden_states"], 2)) / e["hidden_states"]
    return {**e, "full_rate_bytes_per_second": e["hidden_states"] * e["dim"] * 2 * 50,
            "iemocap_gb": e["cache_bytes_per_second"] * IEMOCAP_SECONDS / 1e9,
            "iemocap_gb_every_other_layer": every_other * IEMOCAP_SECONDS / 1e9}


def probe(cfg: SeraConfig, corpus_name: str, quick: bool) -> dict:
    cfg = cfg.updated({"data.corpus": corpus_name, "data.normalise": "none"})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg, progress=False)
    C = len(corpus.labels)
    raw = probe_cv(as_matrix(utterance_embeddings(fs)), fs, folds, C)
    spk_fs = normalise(fs, "speaker")
    spk = probe_cv(as_matrix(utterance_embeddings(spk_fs)), spk_fs, folds, C)
    return {"raw": {k: raw[k] for k in ("ua", "wa", "f1")}, "speaker": {k: spk[k] for k in ("ua", "wa", "f1")}}


def sera_cv(cfg: SeraConfig, normalise: str, seeds: int, quick: bool, state: Path) -> dict:
    """sera's cross-validation on RAVDESS (the full method), resumable from ``state``."""
    cfg = cfg.updated({"data.corpus": "ravdess", "data.normalise": normalise, "train.seeds": seeds})
    cfg = apply_quick(cfg) if quick else cfg
    corpus, folds = corpus_and_folds(cfg)
    fs, _ = features(corpus, cfg, progress=False)
    r = cross_validate(fs, corpus, folds, cfg, progress=False, state=state, report=True)
    return {"seeds": cfg.train.seeds, "folds": len(folds),
            "protocols": {p: {"per_seed_ua": [s["ua"] for s in v["per_seed"]], **{k: v[k] for k in ("ua", "wa", "f1")}}
                          for p, v in r["protocols"].items()}}


def latency(cfg: SeraConfig, repeats: int) -> float:
    """Median seconds to predict a 4 s clip, after one warm-up."""
    encoder = Encoder(cfg.encoder)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.data.normalise = "none"
        model = EmotionClassifier(cfg.model, encoder.num_layers, encoder.dim, 8)
        save_checkpoint(Path(tmp) / "ckpt", model, cfg, [str(i) for i in range(8)], encoder.key, encoder.num_layers,
                        encoder.dim)
        del encoder
        predictor = Predictor(Path(tmp) / "ckpt")
    wave = load_audio(load_corpus(cfg.data).utterances[0].path)
    wave = np.resize(wave, 4 * 16_000)  # exactly 4 s
    predictor.predict_wave(wave)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predictor.predict_wave(wave)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few files, EmoDB's first speakers, a 2-layer HuBERT: "
                    "checks the harness only")
    ap.add_argument("--sera", metavar="NAMES", help="add sera's UA for these encoders (comma-separated) to the saved "
                    "table instead of measuring the rest")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--modes", default="speaker,none", help="data.normalise settings of the sera runs")
    args = ap.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    name = "encoders" + ("-quick" if args.quick else "")
    if args.sera:
        path = RESULTS / f"{name}.json"
        for enc in args.sera.split(","):
            cfg = SeraConfig().updated({"encoder.name": json.loads(path.read_text())["encoders"][enc]["path"]})
            for mode in args.modes.split(","):
                print(f"{enc}, sera, normalise={mode}:", flush=True)
                result = sera_cv(cfg, mode, args.seeds, args.quick, RUNS / "encoders" / f"{enc}-{mode}")
                for p, v in result["protocols"].items():
                    print(f"  {p} protocol: UA {100 * v['ua']['mean']:.1f} ± {100 * v['ua']['std']:.1f}", flush=True)
                saved = json.loads(path.read_text())  # read again: another run may have added its row meanwhile
                saved["encoders"][enc].setdefault("sera", {})[mode] = {**result, "code": code_version()}
                kept = {k: v for k, v in saved.items() if k not in ("benchmark", "commit", "date", "machine", "upstream")}
                save(name, {**kept, "table_commit": saved.get("table_commit", saved["commit"])})  # the rows' own
        return 0
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        encoders = {"whisper-tiny.en": SHARED_MODELS / "whisper-tiny.en", "whisper-base": SHARED_MODELS / "whisper-base",
                    "hubert-large-sized (random)": hubert_large_sized(Path(tmp) / "hubert-large", 2 if args.quick else 24)}
        for enc, path in encoders.items():
            print(f"{enc}:", flush=True)
            cfg = SeraConfig().updated({"encoder.name": str(path)})
            big = "hubert" in enc
            files = 8 if args.quick else (40 if big else 240)
            row = {"path": str(path), "extraction": extraction(cfg, files)}
            e = row["extraction"]
            print(f"  extraction RTF {e['pipeline_rtf']:.4f} (bare encoder {e['bare_encoder_rtf']:.4f}, "
                  f"{e['pipeline_over_bare']:.2f}x); cache {e['cache_bytes_per_second'] / 1e3:.0f} kB per s of audio, "
                  f"7 h: {e['iemocap_gb']:.1f} GB ({e['iemocap_gb_every_other_layer']:.1f} GB every other layer)",
                  flush=True)
            row["predict_4s_seconds"] = latency(copy.deepcopy(cfg), 3 if args.quick else 10)
            print(f"  predict 4 s: {row['predict_4s_seconds']:.3f} s", flush=True)
            if not big:
                row["probe"] = {c: probe(cfg, c, args.quick) for c in (("emodb",) if args.quick else ("ravdess", "emodb"))}
                for c, p in row["probe"].items():
                    print(f"  probe {c}: raw UA {p['raw']['ua']:.3f}, speaker-normalised UA {p['speaker']['ua']:.3f}",
                          flush=True)
            rows[enc] = row
    print(save(name, {"quick": args.quick, "encoders": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
