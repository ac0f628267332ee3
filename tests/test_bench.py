"""`make bench BENCH_ARGS=--quick`: every benchmark script end to end on a few speakers, then the
report. It checks the harness (files, structure, sane values), not the figures."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@pytest.mark.slow
def test_quick_bench_runs_every_script_and_reports(data_root, whisper_path, feature_cache, demo_checkpoint):
    env = {**os.environ, "SERA_DATA": str(data_root), "SERA_ENCODER": str(whisper_path),
           "SERA_CACHE": str(feature_cache), "BENCH_CHECKPOINT": str(demo_checkpoint), "MPLBACKEND": "Agg"}
    run = subprocess.run(["make", "--no-print-directory", "bench", "BENCH_ARGS=--quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=2400)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    load = lambda name: json.loads((RESULTS / f"{name}-quick.json").read_text())  # noqa: E731
    for name in ("extract_speed", "encoders", "baselines", "adapter", "whisper_padding", "scaling", "demo_latency",
                 "enrolment", "startup", "vad_pooling", "speech_only", "probe_fusion", "scaling_data", "microphone",
                 "stage1_audio", "search", "calibration_shift"):
        r = load(name)
        assert r["commit"] and r["machine"]["cpu_cores"] >= 1, name
    encoders = load("encoders")["encoders"]
    tiny, base, big = (encoders[n]["extraction"] for n in ("whisper-tiny.en", "whisper-base", "hubert-large-sized (random)"))
    # stored at 12.5 frames per second in float16: every hidden state's bytes, a quarter of the full rate
    for e in (tiny, base, big):
        assert e["cache_bytes_per_second"] == pytest.approx(e["full_rate_bytes_per_second"] / 4, rel=0.1)
    assert (tiny["hidden_states"], base["hidden_states"], base["dim"]) == (5, 7, 512)
    assert 0.0 <= encoders["whisper-base"]["probe"]["emodb"]["speaker"]["ua"] <= 1.0
    scaling = load("scaling_data")  # UA against training clips: nested RAVDESS speakers, then RAVDESS + EmoDB
    sizes = list(scaling["points"].values())
    assert list(scaling["points"])[-1] == "RAVDESS + EmoDB" and len(sizes) == 3
    assert [s["train_clips"] for s in sizes] == sorted(s["train_clips"] for s in sizes)
    assert all(0.0 <= s[m]["mean"] <= 1.0 for s in sizes for m in ("head alone", "probe alone", "head + probe (shipped)"))
    assert set(scaling["fits"]) == {"head alone", "probe alone", "head + probe (shipped)"}
    assert (RESULTS / "scaling_data-quick.png").is_file()
    mic = load("microphone")  # the test clips through a simulated laptop, with and without stage 2 on copies
    copies = "+ stage 2 on room copies, swapped"
    assert list(mic["variants"]) == ["clean clips", copies]
    for v in mic["variants"].values():  # the fixed test set (statement 1, repetition 1) clean and through the laptop
        assert set(v["views"]) == {"clean", "laptop"} and set(v["vs_clean"]) == {"laptop"}
        assert all(0.0 <= w["ua"]["mean"] <= 1.0 and w["vs_clean_ua"]["pairs"] == 1 for w in v["views"].values())
    assert set(mic["paired"]) == {copies}  # against the recipe on clean clips, by seed and fold
    assert set(mic["paired"][copies]) == set(mic["probe_fold_mean_ua"]) == {"clean", "laptop"}
    shift = load("calibration_shift")["runs"]  # temperatures fitted for another corpus, on the training corpus alone
    assert [(r["source"], r["target"]) for r in shift] == [("ravdess", "emodb"), ("emodb", "ravdess")]
    assert all(set(r["test_ece"]) == {"as trained", "clean", "with copies", "by distance"} for r in shift)
    assert all(0.0 <= e <= 1.0 for r in shift for e in r["test_ece"].values())
    audio = load("stage1_audio")["arms"]  # stage 1 on more audio for one budget of steps, paired with no stage 1
    assert list(audio) == ["no stage 1", "1x", "3x"] and audio["1x"]["audio_over_labelled"] == 1.0
    assert 2.5 < audio["3x"]["audio_over_labelled"] < 3.5 and audio["3x"]["gain"]["head_alone"]["pairs"] == 1
    search = load("search")  # Optuna on validation speakers: trial 0 is the shipped recipe
    assert search["shipped_recipe"]["number"] == 0 and search["shipped_recipe"]["params"]["train.stage1"] is True
    assert len(search["trials"]) >= 2 and all(0.0 <= t["val_head"] <= 1.0 for t in search["trials"])
    assert "test" not in json.dumps(search["trials"]) and (RESULTS / "search-quick.png").is_file()
    shipped = search["confirm"]["shipped recipe"]  # then the test folds, once: the shipped recipe and the best trial
    assert shipped["seeds"] == 1 and 0.0 <= shipped["head_alone"]["mean"] <= 1.0 and len(shipped["runs"]["0.5"]) == 1
    base = load("baselines")
    for corpus in ("ravdess", "emodb"):
        assert len(base["within"][corpus]) == 5  # eGeMAPS and the probe, raw and normalised, and EmoBox's recipe
        assert all(0.0 <= m["ua"] <= 1.0 for m in base["within"][corpus].values())
    assert set(base["cross_corpus"]) == {"ravdess -> emodb", "emodb -> ravdess"}
    parts = load("adapter")["parts"]
    assert {"ravdess", "emodb", "cross", "ablations", "final"} <= set(parts) and len(parts["ablations"]) == 8
    assert parts["final"]["peak_rss_mb"] > parts["final"]["features_mb"] > 0 and parts["final"]["train_seconds"] > 0
    assert set(parts["cross"]) == {"ravdess -> emodb", "emodb -> ravdess"}
    assert all(0.0 <= r["ua"]["mean"] <= 1.0 for r in parts["ablations"].values())
    for r in (parts["ravdess"], *parts["cross"].values()):  # both test protocols, the clip protocol leading
        assert r["protocol"] == "clip" and r["ua"] == r["protocols"]["clip"]["ua"] and "speaker" in r["protocols"]
    curve = load("enrolment")["probe_ua_by_enrolment_clips"]
    assert set(curve) == {"ravdess", "emodb"} and list(curve["emodb"]) == ["0", "1", "2", "4", "8", "16", "32", "all"]
    assert all(0.0 <= m["ua"] <= 1.0 for c in curve.values() for m in c.values())
    pooling = load("vad_pooling")["probe"]
    for corpus in ("ravdess", "emodb"):
        assert 0.2 < pooling[corpus]["speech_share_of_frames"] < 1.0  # acted clips pad their sentences with silence
        assert 0.2 < pooling[corpus]["trimmed_share_of_frames"] < 1.0  # trimmed before encoding: fewer frames
        assert {f"{p} protocol, {f} frames" for p in ("clip", "speaker")
                for f in ("all", "speech", "trimmed clips' all")} <= set(pooling[corpus])
    speech = load("speech_only")
    assert list(speech["variants"]) == ["whole clips", "trimmed to speech", "SAP over speech frames"]
    assert all(part["code"] and all(c["source"] and c["commit"] for c in part["code"]) for part in speech["variants"].values())
    assert set(speech["paired"]) == {"trimmed to speech - whole clips", "SAP over speech frames - whole clips"}
    for pair in speech["paired"].values():
        for protocol, c in pair.items():  # paired over seeds x folds
            assert c["pairs"] >= 1 and 0.0 <= c["sign_test_p"] <= 1.0 and -1.0 <= c["mean_gain"] <= 1.0, protocol
    fusion = load("probe_fusion")["parts"]
    assert set(fusion) == {"ravdess (none)", "emodb (none)", "ravdess -> emodb (none)", "emodb -> ravdess (none)",
                           "ravdess (none, residual)"}  # and the head as a correction of the probe
    for part in fusion.values():  # every weight scored from the same models, on validation and test speakers
        assert list(part["val_fusion"]) == list(part["test_fusion"]["clip"]) == ["0", "0.25", "0.5", "0.75", "1"]
        assert f"{part['validation_pick']['weight']:g}" in part["val_fusion"] and part["vs_head"]["clip"]["pairs"] >= 1
        assert part["test_fusion"]["clip"]["0.5"] == pytest.approx(part["ua"])  # the headline: the weight the models ran with
    ablations = load("ablations-none")["variants"]  # the method's parts, one at a time, in the clip protocol
    assert list(ablations) == ["full method", "no stage 1", "stage 1 without local attributes",
                               "stage 1 without self-distillation", "mean pooling instead of SAP",
                               "last layer instead of WAP", "WAP without the Transformer"]
    for name, part in list(ablations.items())[1:]:
        assert part["vs_full"]["0"]["clip"]["pairs"] >= 1 and part["vs_full"]["0.5"]["clip"]["pairs"] >= 1, name
    startup = load("startup")
    assert set(startup["end_to_end_seconds"]) == set(startup["latency_4s_seconds"]) == {"pytorch", "onnx"}
    modes = load("whisper_padding")["modes"]
    assert set(modes) == {"real length", "padded to 30 s"}
    assert modes["padded to 30 s"]["encoder_rtf"] > modes["real length"]["encoder_rtf"]  # 30 s of input per clip
    rows = load("scaling")["rows"]
    assert [round(r["seconds"]) for r in rows] == [4, 10, 30] and rows[0]["windows"] == 1
    assert rows[-1]["windows"] >= 5 and rows[-1]["encoded_seconds"] <= 30.01  # one piece per sentence
    assert all(0 < r["vad_seconds"] < r["encoder_seconds"] for r in rows)
    summary = (RESULTS / "summary-quick.md").read_text()
    for method in ("eGeMAPS + SVM", "linear probe", "EmoBox recipe", "sera, full method (clip protocol)",
                   "sera, full method (speaker protocol)", "clip protocol: sera", "no stage 1", "predict 30 s",
                   "padded to 30 s", "training on all RAVDESS", "sera + probe, trained unnormalised",
                   "Ablations in the clip protocol", "head correcting the probe"):
        assert method in summary, method
    assert (RESULTS / "ua_by_method-quick.png").stat().st_size > 10_000


def test_the_paired_comparison_on_known_gains():
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from common import sign_test
    from speech_only import paired

    assert sign_test([0.01] * 5) == pytest.approx(2 / 32)  # 5 of 5 gained: p = 2 * 0.5^5
    assert sign_test([0.01, -0.02, 0.0]) == 1.0 and sign_test([]) == 1.0  # one each way, a tie dropped
    assert sign_test([0.1] * 9 + [-0.1]) == pytest.approx(2 * 11 / 1024)
    runs = lambda uas: {"runs": [{"seed": s, "fold": f, "metrics": {"clip": {"ua": u}}}  # noqa: E731
                                 for (s, f), u in zip([(0, "a"), (0, "b"), (1, "a")], uas)]}
    c = paired(runs([0.5, 0.6, 0.7]), runs([0.6, 0.6, 0.8]), "clip")
    assert (c["pairs"], c["gained"]) == (3, 2) and c["mean_gain"] == pytest.approx(0.2 / 3)


def test_runs_of_one_variant_from_two_processes_combine_seed_by_seed():
    import sys

    sys.path.insert(0, str(ROOT / "bench"))
    from speech_only import combine

    def part(seeds: list[int], ua: float, commit: str) -> dict:
        runs = [{"seed": s, "fold": f, "metrics": {p: {"ua": ua + s / 10 + i / 100, "wa": ua, "f1": ua} for p in ("clip", "speaker")},
                 "best_epoch": 3, "code": {"source": "x", "commit": commit}} for s in seeds for i, f in enumerate("ab")]
        return {"runs": runs, "protocol": "clip", "protocols": {"clip": {}, "speaker": {}}, "per_fold": [{"fold": "a"}, {"fold": "b"}],
                "timing": {"stage1_seconds_per_epoch": 10.0 * len(seeds), "total_seconds": 1.0}, "code": [], "seeds": len(seeds)}

    both = combine(part([0, 1], 0.5, "old"), part([2], 0.5, "new"))
    assert both["seeds"] == 3 and [s["seed"] for s in both["per_seed"]] == [0, 1, 2]
    assert both["per_seed"][2]["ua"] == pytest.approx(0.705) and both["ua"]["mean"] == pytest.approx(0.605)
    assert both["per_fold"][1]["ua"]["mean"] == pytest.approx(0.61) and len(both["runs"]) == 6
    assert {c["commit"] for c in both["code"]} == {"old", "new"}
    assert both["timing"]["stage1_seconds_per_epoch"] == pytest.approx(20 * 4 / 6 + 10 * 2 / 6)
    again = combine(part([0, 1], 0.5, "old"), part([0], 0.6, "new"))  # seed 0 run again: its new runs replace the old
    assert again["per_seed"][0]["ua"] == pytest.approx(0.605) and again["per_seed"][1]["ua"] == pytest.approx(0.605)
    assert {c["commit"] for c in again["code"]} == {"old", "new"}
    assert combine(part([0], 0.5, "old"), part([0, 1], 0.5, "new"))["code"] == []  # all replaced: the new part as it is
