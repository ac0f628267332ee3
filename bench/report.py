"""Collect bench/results/*.json into one table and one picture, and put them in the docs' Results page.

    python bench/report.py [--quick]

Writes bench/results/summary.md and bench/results/ua_by_method.png, and replaces the block
between the bench markers in docs/results.md (not in --quick mode, which reads the -quick files).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, clip_runs, paired_runs  # noqa: E402

ROOT = RESULTS.parent.parent
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
GOAL = 3.0  # points of UA over the best baseline in the same protocol, every corpus (issue 15)
CORPORA = {"ravdess": "RAVDESS (8 classes)", "emodb": "EmoDB (7 classes)"}


def load(name: str, quick: bool) -> dict:
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def pct(m: dict | float, seeds: int = 1) -> str:
    """'79.4 ± 0.5' from {"mean", "std"} over several seeds, else '70.2'."""
    if isinstance(m, dict):
        return f"{100 * m['mean']:.1f} ± {100 * m['std']:.1f}" if seeds > 1 else f"{100 * m['mean']:.1f}"
    return f"{100 * m:.1f}"


def seeds_of(m: dict) -> int:
    return m.get("seeds", 1)


FUSED = "sera + probe, trained unnormalised (clip protocol)"  # bench/probe_fusion.py, make reproduce until 2026-12-07
FUSED_SPEAKER = "sera + probe, trained speaker-normalised (speaker protocol)"  # probe_fusion.py --normalise speaker
UTTERANCE_HEAD = "sera, head alone, each clip standardised with its own statistics (clip protocol)"  # --normalise utterance
FUSION_PART = {FUSED: "none", FUSED_SPEAKER: "speaker", UTTERANCE_HEAD: "utterance"}  # row -> its probe_fusion parts


def rows(baselines: dict, adapter: dict, fusion: dict | None = None) -> dict[str, dict[str, dict]]:
    """method -> corpus -> {"ua", "wa", "f1"} (floats or mean/std dicts), baselines first."""
    table: dict[str, dict[str, dict]] = {}
    for corpus, methods in baselines.get("within", {}).items():
        for method, m in methods.items():
            table.setdefault(method, {})[corpus] = m
    parts = adapter.get("parts", {})
    for corpus in CORPORA:
        if corpus in parts:
            for name, r in by_protocol("sera, full method", parts[corpus]):
                table.setdefault(name, {})[corpus] = r
    for method, run in parts.get("ablations", {}).items():
        if method != "full method":
            for name, r in by_protocol(f"sera, {method}", run):
                table.setdefault(name, {})["ravdess"] = r
    for part, run in (fusion or {}).get("parts", {}).items():
        corpus, entries = fusion_entries(part, run)
        if corpus in CORPORA:
            for name, r in entries:
                table.setdefault(name, {})[corpus] = r
    return table


def fusion_rows(run: dict) -> list[tuple[str, dict]]:
    """A probe_fusion part: sera with its probe at the configured weight, and the same trained models'
    SAP head alone (weight 0; UA only)."""
    meta = {"seeds": run["seeds"], "upstream": run.get("upstream")}
    head = run["test_fusion"]["clip"]["0"]
    return [(FUSED, {**run["protocols"]["clip"], **meta}),
            ("sera, head alone (the same models without their probe; clip protocol)", {"ua": head, **meta})]


def fusion_entries(part: str, run: dict) -> tuple[str, list[tuple[str, dict]]]:
    """A probe_fusion part ("ravdess (none)", "ravdess -> emodb (speaker)") -> what it tested (a corpus or a
    pair) and its rows: unnormalised, ``fusion_rows`` (the two protocols coincide); speaker-normalised,
    sera + probe in the speaker protocol at the configured weight."""
    where, _, normalise = part.partition(" (")
    if normalise == "none)":
        return where, fusion_rows(run)
    if normalise == "speaker)":
        return where, [(FUSED_SPEAKER, {**run["protocols"]["speaker"], "seeds": run["seeds"],
                                        "upstream": run.get("upstream")})]
    if normalise == "utterance)":  # each clip's own statistics: its time means are zero, so the probe reads nothing
        return where, [(UTTERANCE_HEAD, {"ua": run["test_fusion"]["clip"]["0"], "seeds": run["seeds"],
                                         "upstream": run.get("upstream")})]
    return where, []


def by_protocol(name: str, run: dict) -> list[tuple[str, dict]]:
    """One row per test protocol, the clip protocol first; runs saved before both protocols were
    scored keep their single row (speaker protocol when speaker-normalised)."""
    if "protocols" not in run:
        return [(name, run)]
    return [(f"{name} ({p} protocol)", {**run["protocols"][p], "seeds": run["seeds"], "upstream": run.get("upstream")})
            for p in ("clip", "speaker")]


def speed_goals(extract: dict, scaling: dict) -> list[str]:
    """The issue's speed goals, each with its verdict."""
    verdict = lambda ok: "met" if ok else "**missed**"  # noqa: E731
    lines = []
    if extract:
        ratio = extract["pipeline_over_bare"]
        lines.append(f"- Extraction within 1.3× of the bare encoder: {ratio:.2f}×, {verdict(ratio <= 1.3)}.")
    rows = scaling.get("rows", [])
    short = [r for r in rows if round(r["seconds"]) == 4]
    if short:
        t = short[0]["predict_seconds"]
        on = f" ({scaling['encoder']})" if "encoder" in scaling else ""
        lines.append(f"- Predict a 4 s clip in under 0.1 s after start-up{on}: {t:.3f} s, {verdict(t < 0.1)}.")
    if rows:
        shares = [r["adapter_share_of_encoder"] for r in rows]
        lines.append(f"- Adapter + head under 10% of the encoder's time: {100 * min(shares):.0f}–{100 * max(shares):.0f}% "
                     f"over {len(rows)} lengths, {verdict(max(shares) < 0.10)}.")
    vad = [r["vad_share_of_encoder"] for r in rows if "vad_share_of_encoder" in r]
    if vad:
        lines.append(f"- Voice activity under 5% of the encoder's time: {100 * min(vad):.1f}–{100 * max(vad):.1f}% "
                     f"over {len(vad)} lengths, {verdict(max(vad) < 0.05)}.")
    return [""] + lines if lines else []


def p_value(p: float) -> str:
    return f"= {p:.2f}" if p >= 0.01 else "< 0.001" if p < 0.001 else f"= {p:.3f}"


def mean(m) -> float:
    return m["mean"] if isinstance(m, dict) else m


def markdown(table: dict, baselines: dict, adapter: dict, scaling: dict, extract: dict, demo: dict,
             whisper: dict, fusion: dict | None = None) -> str:
    base_enc = baselines.get("upstream") or "whisper-tiny.en"  # results of older benches name no encoder
    out = [f"UA / WA / macro-F1 in %, speaker-independent folds, {base_enc}, "
           "the 2-core CPU. "
           "sera: mean ± std over seeds where there are several (the seed count is in brackets); the baselines "
           "are deterministic. Protocols: baselines on raw features see each test clip alone (the clip protocol, what "
           "`sera predict` gets); speaker-normalised ones use each test speaker's statistics (the speaker protocol).",
           "",
           "| method | " + " | ".join(f"{CORPORA[c]} UA | WA | F1" for c in CORPORA) + " |",
           "|---" * (1 + 3 * len(CORPORA)) + "|"]
    # sera's results name their encoder; those saved before they did all ran on whisper-tiny.en
    enc_of = lambda m: (m.get("upstream") or "whisper-tiny.en") if "seeds" in m else base_enc  # noqa: E731
    for method, by_corpus in table.items():
        cells = []
        for c in CORPORA:
            m = by_corpus.get(c)
            n = f" ({seeds_of(m)})" if m and "seeds" in m else ""
            n += f" [{enc_of(m)}]" if m and enc_of(m) != base_enc else ""
            cells += [pct(m[k], seeds_of(m)) + (n if k == "ua" else "") if m and k in m else "" for k in ("ua", "wa", "f1")]
        out.append(f"| {method} | " + " | ".join(cells) + " |")
    baselines_only = {name: by for name, by in table.items() if not name.startswith("sera")}
    full = adapter.get("parts", {}).get("ablations", {}).get("full method")
    if full:
        out += ["", f"Encoder: {base_enc} unless a cell names another in brackets."]
        out += ["", f"Ablation rows: compare with the full method over the same seeds "
                    f"({pct(full['ua'], seeds_of(full))} UA with {seeds_of(full)} seed{'s' * (seeds_of(full) > 1)})."]
    out.append("")
    sera_rows = {"clip": [FUSED, "sera, full method (clip protocol)"],  # the same protocol as raw-feature baselines
                 "speaker": [FUSED_SPEAKER, "sera, full method (speaker protocol)", "sera, full method"]}  # older: one row
    for c in CORPORA:
        for protocol, names in sera_rows.items():
            sera_name = next((n for n in names if c in table.get(n, {})), None)
            if sera_name is None:
                continue
            row = table[sera_name]
            if enc_of(row[c]) != base_enc:  # a margin between two encoders would say nothing about the method
                out.append(f"- {CORPORA[c]}, {protocol} protocol: sera ran on {enc_of(row[c])}, the baselines on "
                           f"{base_enc}: not compared.")
                continue
            names = [n for n in baselines_only if ("normalised" in n) == (protocol == "speaker")]
            scored = [(mean(baselines_only[n][c]["ua"]), n) for n in names if c in baselines_only[n]]
            if not scored:
                continue
            best, name = max(scored)
            gain = 100 * (mean(row[c]["ua"]) - best)
            verdict = "met" if gain >= GOAL else "**missed**"
            part = f"{c} ({FUSION_PART[sera_name]})" if sera_name in FUSION_PART else None
            paired = (fusion or {}).get("parts", {}).get(part, {}).get("vs_probe", {}).get(protocol)
            same_run = (f" In the same runs, against the probe fitted on the same speakers (fold means, paired over "
                        f"seeds × folds): {100 * paired['mean_gain']:+.1f}, {paired['gained']} of {paired['pairs']} "
                        f"pairs gained (sign test p {p_value(paired['sign_test_p'])})." if paired else "")
            out.append(f"- {CORPORA[c]}, {protocol} protocol: sera {gain:+.1f} UA points over the best baseline in the "
                       f"same protocol ({name}, {100 * best:.1f}, predictions pooled over folds); goal +{GOAL:g}: "
                       f"{verdict}.{same_run}")
    cross = {k: dict(v) for k, v in baselines.get("cross_corpus", {}).items()}
    for k, run in adapter.get("parts", {}).get("cross", {}).items():
        for name, r in by_protocol("sera, full method", run):
            cross.setdefault(k, {})[name] = r
    for part, run in (fusion or {}).get("parts", {}).items():
        pair, entries = fusion_entries(part, run)
        if "->" in pair:
            for name, r in entries:
                cross.setdefault(pair, {})[name] = r
    if cross:
        methods = list(dict.fromkeys(m for v in cross.values() for m in v))
        out += ["", "Across corpora (train on all of one, test on all of the other; the 6 shared emotions), UA:", "",
                "| method | " + " | ".join(cross) + " |", "|---" * (1 + len(cross)) + "|"]
        for method in methods:
            out.append(f"| {method} | " + " | ".join(
                pct(m["ua"], seeds_of(m)) + (f" [{enc_of(m)}]" if enc_of(m) != base_enc else "")
                if (m := cross[k].get(method)) else "" for k in cross) + " |")
    emobox = baselines.get("emobox_folds")
    if emobox:
        published = ", ".join(f"{k} {v:.1f}" for k, v in emobox["published_ua"].items())
        out += ["", f"RAVDESS on EmoBox's own 6 actor-disjoint folds (`--folds {emobox['folds']}`), raw features, clip "
                    f"protocol, UA: " + ", ".join(f"{m} {pct(r['ua'])}" for m, r in emobox["within"].items())
                + f". EmoBox publishes, with its recipe on these folds: {published}."]
        parts = (fusion or {}).get("parts", {})
        for what, key in (("sera on raw features with one copy of each clip, read in turns (shipped until "
                           "2026-12-07)", "none, noise or telephone or room, swapped"),
                          ("sera on clean clips alone", "none")):
            if run := parts.get(f"ravdess, EmoBox folds ({key})"):
                n = run["seeds"]
                out[-1] += (f" {what} on the same folds ({n} seed{'s' * (n > 1)}): {pct(run['ua'], n)}, its head "
                            f"alone {pct(run['test_fusion']['clip']['0'], n)}.")
    padding = whisper.get("modes", {})
    if padding:
        out += ["", "Whisper at the clip's real length (sera's default) against padded to 30 s (transformers' "
                    "WhisperModel), RAVDESS, speaker-normalised features:", "",
                "| Whisper input | encoder real-time factor | linear probe UA (all folds) | sera UA (seeds, folds) |",
                "|---|---|---|---|"]
        for mode, r in padding.items():
            out.append(f"| {mode} | {r['encoder_rtf']:.4f} | {pct(r['probe']['ua'])} | "
                       f"{pct(r['sera']['ua'], seeds_of(r['sera']))} ({seeds_of(r['sera'])}, {len(r['sera_folds'])}) |")
    speed = []
    if extract:
        speed.append(f"| feature extraction, real-time factor | {extract['pipeline_rtf']:.4f} | bare encoder "
                     f"{extract['bare_encoder_rtf']:.4f} ({extract['pipeline_over_bare']:.2f}×, goal ≤ 1.3×) |")
    timing = adapter.get("parts", {}).get("ravdess", {}).get("timing")
    if timing:
        beside = (f"bare encoder over all {extract['files']} RAVDESS clips {extract['bare_encoder_seconds']:.1f} s "
                  "(once: features are cached)" if extract.get("corpus") == "ravdess" else "")
        speed.append(f"| stage 1 / stage 2, seconds per epoch (RAVDESS training folds) | "
                     f"{timing['stage1_seconds_per_epoch']:.1f} / {timing['stage2_seconds_per_epoch']:.1f} | {beside} |")
    fin = adapter.get("parts", {}).get("final")
    if fin:
        speed.append(f"| stage 1 / stage 2, seconds per epoch on all RAVDESS ({fin['utterances']} clips) | "
                     f"{fin['stage1_seconds_per_epoch']:.1f} / {fin['stage2_seconds_per_epoch']:.1f} | |")
        speed.append(f"| training on all RAVDESS ({fin['utterances']} clips, both stages): time, peak memory | "
                     f"{fin['train_seconds']:.0f} s, {fin['peak_rss_mb']:.0f} MB | its cached features "
                     f"{fin['features_mb']:.0f} MB |")
    on = f", {scaling['encoder']}" if "encoder" in scaling else ""
    for r in scaling.get("rows", []):
        vad = f"VAD {100 * r['vad_share_of_encoder']:.1f}%, " if "vad_share_of_encoder" in r else ""
        speed.append(f"| predict {r['seconds']:.0f} s of audio ({r['windows']} piece{'s' * (r['windows'] > 1)}{on}) | {r['predict_seconds']:.3f} s | "
                     f"bare encoder {r['encoder_seconds']:.3f} s ({vad}adapter + head "
                     f"{100 * r['adapter_share_of_encoder']:.0f}% of it); peak RSS {r['peak_rss_mb']:.0f} MB |")
    if "cli_predict_4s_seconds_with_start" in scaling:
        speed.append(f"| `sera predict`, 4 s clip, process start included{on} | {scaling['cli_predict_4s_seconds_with_start']:.2f} s | |")
    if demo:
        speed.append(f"| web demo, {demo['clip_seconds']:.1f} s clip over HTTP with plots (median) | "
                     f"{demo['http_median_seconds']:.2f} s | model alone {demo['predict_median_seconds']:.3f} s |")
    if speed:
        out += ["", "| speed and memory | figure | beside it |", "|---|---|---|", *speed]
    out += speed_goals(extract, scaling)
    return "\n".join(out) + "\n"


def chart(table: dict, path: Path) -> None:
    """UA per method and corpus, with the std over seeds as error bars."""
    methods = [m for m in table if not m.startswith("sera, ") or m.startswith("sera, full method")]  # ablations: table only
    fig, ax = plt.subplots(figsize=(8, 3.6))
    width = 0.8 / len(CORPORA)
    for j, c in enumerate(CORPORA):
        vals = [table[m].get(c) for m in methods]
        x = [i + (j - (len(CORPORA) - 1) / 2) * width for i in range(len(methods))]
        heights = [100 * mean(v["ua"]) if v else 0 for v in vals]
        bars = ax.bar(x, heights, width, label=CORPORA[c],
                      yerr=[100 * v["ua"]["std"] if v and isinstance(v["ua"], dict) else 0 for v in vals], capsize=3)
        ax.bar_label(bars, [f"{h:.1f}" if h else "" for h in heights], fontsize=7, padding=2)
    ax.set_xticks(range(len(methods)), [m.replace(", ", ",\n") for m in methods], fontsize=8)
    ax.set_ylabel("UA (%)")
    ax.set_ylim(0, 105)
    ax.set_title("Unweighted accuracy per method (speaker-independent folds)")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sera_ua(sera: dict, mode: str, protocol: str) -> str:
    """UA of a sera run trained with ``data.normalise = mode``, in ``protocol``, with its seed count.
    Rows saved before both protocols were scored hold one figure: unnormalised training (whose two
    protocols coincide) and the speaker protocol of speaker-normalised training."""
    run = sera.get(mode)
    if run is None:
        return "–"
    if "protocols" in run:
        return f"{pct(run['protocols'][protocol]['ua'], run['seeds'])} ({run['seeds']} seeds)"
    if mode == "none" or protocol == "speaker":
        return f"{pct(run['ua'], run['seeds'])} ({run['seeds']} seeds)"
    return "–"


def speech_table(speech: dict, pooling: dict) -> list[str]:
    """Issue 17: does seeing the speech alone help, for the probe and for sera trained on trimmed clips?"""
    lines = []
    if pooling.get("probe"):
        lines += ["", "Speech alone, linear probe (`bench/vad_pooling.py`), UA %:", "",
                  "| pooling | " + " | ".join(f"{c} {p}" for c in pooling["probe"] for p in ("clip", "speaker")) + " |",
                  "|---|" + "---|" * 2 * len(pooling["probe"])]
        for f in ("all", "speech", "trimmed clips' all"):
            lines.append(f"| {f} frames | " + " | ".join(f"{100 * r[f'{p} protocol, {f} frames']['ua']:.1f}"
                                                        for r in pooling["probe"].values() for p in ("clip", "speaker")) + " |")
    if speech.get("variants"):
        lines += ["", f"Speech alone, sera trained on {speech['corpus']} (`bench/speech_only.py`, data.normalise "
                  f"{speech['normalise']}), UA %, mean ± std over seeds; stage timings are means over runs that "
                  "ran under different loads (`docs/bench-notes.md` compares like with like):", "",
                  "| variant | seeds | clip protocol | speaker protocol | stage 1 s/epoch | stage 2 s/epoch |",
                  "|---|---|---|---|---|---|"]
        for name, r in speech["variants"].items():
            lines.append(f"| {name} | {r['seeds']} | {pct(r['protocols']['clip']['ua'], r['seeds'])} | "
                         f"{pct(r['protocols']['speaker']['ua'], r['seeds'])} | {r['timing']['stage1_seconds_per_epoch']:.1f} | "
                         f"{r['timing']['stage2_seconds_per_epoch']:.1f} |")
        for name, by in speech["paired"].items():
            lines.append("")
            lines.append(f"{name}: " + "; ".join(
                f"{p} protocol {100 * c['mean_gain']:+.1f} UA, {c['gained']} of {c['pairs']} seed × fold pairs gained "
                f"(sign test p = {c['sign_test_p']:.2f})" for p, c in by.items()) + ".")
    return lines


SHIPPED_ABLATIONS = "ablations-none-noise-or-telephone-or-room-swapped"  # probe_fusion --parts ablations with the
#                                                                        reproduce recipe's copies, raw features


def ablation_table(ablations: dict | None, trained: str = "on the clips alone") -> list[str]:
    """The method's parts in the protocol a user gets (bench/probe_fusion.py --parts ablations)."""
    variants = (ablations or {}).get("variants", {})
    if not variants:
        return []
    w = f"{ablations['weight']:g}"
    encoders = ", ".join(sorted({v["upstream"] for v in variants.values()}))

    def cell(v: dict, at: str) -> str:
        ua = v["test_fusion"]["clip"][at]
        c = v.get("vs_full", {}).get(at, {}).get("clip")
        vs = f" | {100 * c['mean_gain']:+.1f} ({c['gained']}/{c['pairs']}, p {p_value(c['sign_test_p'])})" if c else " | "
        return f"{pct(ua, v['seeds'])}{vs}"

    out = ["", f"Ablations in the clip protocol (RAVDESS, 8 classes, 4 folds, trained without speaker normalisation "
               f"{trained}, {encoders}): UA %, mean ± std over seeds; against the full method: the mean gain over "
               f"seeds × folds, pairs gained, sign test. The head alone is the method's own parts; with the probe "
               f"(weight {w}) is the average sera ships.", "",
           "| variant | seeds | head alone | vs full | with the probe | vs full |", "|---|---|---|---|---|---|"]
    for name, v in variants.items():
        out.append(f"| {name} | {v['seeds']} | {cell(v, '0')} | {cell(v, w)} |")
    return out


def scaling_data_table(scaling: dict | None) -> list[str]:
    """UA against training clips (bench/scaling_data.py): where the method's head would meet the probe."""
    if not scaling:
        return []
    parts = ("head alone", "probe alone", "head + probe (shipped)")
    out = ["", f"UA against training clips on RAVDESS's test folds (`bench/scaling_data.py`, {scaling['upstream']}, "
               f"{scaling['seeds']} seeds, clip protocol, the reproduce recipe on raw features and clean clips): "
               "nested shares of each fold's training speakers, then all of them with every EmoDB speaker; each model "
               "scored as its head alone, its probe alone and both (what sera ships). UA %, mean ± std over "
               "seeds.", "",
           "| training set | clips | " + " | ".join(parts) + " |", "|---|---|---|---|---|"]
    for label, v in scaling["points"].items():
        out.append(f"| {label} | {v['train_clips']:.0f} | " + " | ".join(pct(v[m], scaling["seeds"]) for m in parts) + " |")
    fits, meet = scaling["fits"], scaling.get("head_meets_probe_at_clips")
    largest = max(v["train_clips"] for v in scaling["points"].values())
    if meet is None:
        where = "The head's line does not climb faster than the probe's: on this trend it never catches up."
    elif meet > 10 * largest:
        where = (f"The head's line climbs faster than the probe's but would meet it only beyond ten times the largest "
                 f"training set measured ({largest:,.0f} clips): further than the fit can say.")
    else:
        where = f"The head's line meets the probe's at about {meet:,.0f} training clips (an extrapolation)."
    out += ["", "Least-squares lines, UA per tenfold more clips: " + ", ".join(
        f"{m} {100 * fits[m]['b']:+.1f}" for m in parts) + ". " + where,
        "", "![UA against training clips](assets/scaling_data.png)"]
    return out


def gain_cell(g: dict | None) -> str:
    """A paired gain (``common.paired_gains``) as a table cell: mean, pairs gained, sign test; "" for none."""
    if g is None:
        return ""
    return f"{100 * g['mean_gain']:+.1f} ({g['gained']}/{g['pairs']}, p {p_value(g['sign_test_p'])})"


def stage1_audio_table(run: dict | None) -> list[str]:
    """Stage 1 for one budget of steps on more and more audio (bench/stage1_audio.py), paired with no stage 1."""
    if not run:
        return []
    seeds = run["arms"]["no stage 1"]["seeds"]
    out = ["", f"Stage 1 on more audio (`bench/stage1_audio.py`, {run['upstream']}, {run['corpus']}, {seeds} seeds, "
               f"{run['steps']} stage 1 steps in every arm, clip protocol, the reproduce recipe's settings on raw "
               "features). Gains are paired with the same seed and fold trained without stage 1: mean, pairs gained, "
               "sign test.", "",
           "| stage 1 audio | × labelled | head alone | gain | head + probe | gain |", "|---|---|---|---|---|---|"]
    for arm, v in run["arms"].items():
        gain = v.get("gain", {})
        out.append(f"| {arm} | {v['audio_over_labelled']:.1f} | {pct(v['head_alone'], seeds)} | "
                   f"{gain_cell(gain.get('head_alone'))} | {pct(v['shipped'], seeds)} | {gain_cell(gain.get('shipped'))} |")
    return out


def calibration_shift_table(run: dict | None) -> list[str]:
    """Temperatures fitted on the training corpus for another corpus's clips (bench/calibration_shift.py)."""
    if not run:
        return []
    ways = ("as trained", "clean", "with copies", "by distance")
    names = {"ravdess": "RAVDESS", "emodb": "EmoDB"}
    settings = run["settings"]
    features = "raw features" if settings["data.normalise"] == "none" else \
        f"features standardised per {settings['data.normalise']}, stats dropout {settings['train.stats_dropout']:g}"
    out = ["", "A temperature for another corpus, fitted on the training corpus alone (`bench/calibration_shift.py`, "
           f"{run['upstream']}, the reproduce recipe trained on one corpus, {features}, clip protocol): the test "
           "corpus's expected calibration error, mean ± std over seeds, and the accuracies the temperature has to "
           "match.", "",
           "| direction | seeds | accuracy: validation / its copies / test | " + " | ".join(f"ECE, {w}" for w in ways) + " |",
           "|---|---|---|" + "---|" * len(ways)]
    for pair in dict.fromkeys((r["source"], r["target"]) for r in run["runs"]):
        mine = [r for r in run["runs"] if (r["source"], r["target"]) == pair]
        acc = " / ".join(f"{100 * np.mean([r['accuracy'][k] for r in mine]):.1f}"
                         for k in ("validation", "validation copies", "test"))
        ece = " | ".join(f"{np.mean([r['test_ece'][w] for r in mine]):.3f} ± {np.std([r['test_ece'][w] for r in mine]):.3f}"
                         for w in ways)
        out.append(f"| {names.get(pair[0], pair[0])} → {names.get(pair[1], pair[1])} | {len(mine)} | {acc} | {ece} |")
    return out


def beside(fusion: dict | None, names, label: str) -> list[tuple[str, dict, dict]]:
    """(name, the shipped recipe's probe_fusion part, the part run with ``label``) for each of ``names`` (corpora
    or cross-corpus directions) that has both, unnormalised: "ravdess (none)" beside "ravdess (none, residual)"."""
    parts = (fusion or {}).get("parts", {})
    return [(n, parts[f"{n} (none)"], parts[f"{n} (none, {label})"]) for n in names
            if f"{n} (none)" in parts and f"{n} (none, {label})" in parts]


def residual_table(fusion: dict | None) -> list[str]:
    """The head as a correction of a fixed probe (``model.residual_probe``, bench/probe_fusion.py --residual)
    beside the probe and the shipped recipe's runs on the same seeds and folds, clip protocol."""
    pairs = beside(fusion, CORPORA, "residual")
    if not pairs:
        return []
    out = ["", "The head as a correction of a fixed probe (`model.residual_probe`, `bench/probe_fusion.py --residual`), "
           "clip protocol, UA in %, mean ± std over seeds; gains paired over seeds × folds with the runs named:", "",
           "| corpus | probe alone | head alone | head correcting the probe | gain over the probe | shipped (head + probe) "
           "| corrected head + probe | gain over shipped |", "|---|---|---|---|---|---|---|---|"]
    for corpus, plain, residual in pairs:
        seeds = residual["seeds"]
        ua = lambda run, at: pct(run["test_fusion"]["clip"][at], seeds)  # noqa: E731
        mine, theirs = clip_runs(residual, ("0", "0.5", "1")), clip_runs(plain)
        out.append(f"| {CORPORA[corpus]} | {ua(residual, '1')} | {ua(plain, '0')} | {ua(residual, '0')} | "
                   f"{gain_cell(paired_runs(mine['1'], mine['0']))} | {ua(plain, '0.5')} | "
                   f"{ua(residual, '0.5')} | {gain_cell(paired_runs(theirs['0.5'], mine['0.5']))} |")
    return out


# Copies stage 2 and the probe also learn from, as probe_fusion --train-augment [--train-copies swap] names its parts
COPIES = {
    "noise or telephone or room, swapped": "one copy of each clip, noise, telephone or room (as `reproduce` trains)",
    "noise+telephone+room": "three copies of each clip, every epoch reading all (the `travel` preset)",
    "noise+telephone+room, swapped": "three copies of each clip, each epoch reading one of four",
    "noise or telephone, swapped": "one copy of each clip, noise or telephone",
    "channel, swapped": "one copy of each clip, another device and room drawn per clip (`channel`)",
    "noise or telephone or room or channel, swapped": "one copy of each clip, noise, telephone, room or channel",
    "noise or telephone or room or channel or mp3 or gain, swapped":
        "one copy of each clip, of six kinds: noise, telephone, room, channel, MP3 or gain",
}


def copies_table(fusion: dict | None) -> list[str]:
    """Stage 2 and the probe also trained on augmented copies of the training clips (bench/probe_fusion.py
    --train-augment), beside the recipe on the clips alone: within RAVDESS and EmoDB and across corpora, clip protocol,
    paired over seeds × folds."""
    names = ("ravdess", "emodb", "ravdess -> emodb", "emodb -> ravdess")
    rows = [(label, *trio) for label in COPIES for trio in beside(fusion, names, label)]
    if not rows:
        return []
    out = ["", "Stage 2 and the probe also trained on augmented copies of the training clips (`bench/probe_fusion.py "
           "--train-augment`), against the clips alone in the same seeds and folds; across corpora the 6 shared "
           "emotions. Clip protocol, UA in % (ECE after the temperature):", "",
           "| test | copies | clips alone | with the copies | gain | head alone, clips / copies | probe alone, "
           "clips / copies |", "|---|---|---|---|---|---|---|"]
    for label, name, plain, copies in sorted(rows, key=lambda r: (names.index(r[1]), list(COPIES).index(r[0]))):
        seeds = copies["seeds"]
        ece = lambda run: run["protocols"]["clip"].get("ece_calibrated")  # noqa: E731 (older runs saved none)
        cell = lambda run: pct(run["ua"], seeds) + (f" ({ece(run)['mean']:.3f})" if ece(run) else "")  # noqa: E731
        at = lambda run, w: pct(run["test_fusion"]["clip"][w], seeds)  # noqa: E731
        out.append(f"| {CORPORA.get(name, name)} | {COPIES[label]} | {cell(plain)} | {cell(copies)} | "
                   f"{gain_cell(paired_runs(clip_runs(plain)['0.5'], clip_runs(copies)['0.5']))} | "
                   f"{at(plain, '0')} / {at(copies, '0')} | {at(plain, '1')} / {at(copies, '1')} |")
    return out


# How training standardised the features, as probe_fusion --normalise [--stats-dropout] names its parts
STATISTICS = {"none": "none (raw features, clips alone)",
              "none, noise or telephone or room, swapped":
                  "none, and one copy of each clip (the `reproduce` recipe until 2026-12-07)",
              "speaker": "per speaker, all the speaker's clips",
              "speaker, stats dropout 0.5": "per speaker, statistics of every size (stats dropout 0.5)",
              "speaker, noise or telephone or room, swapped, stats dropout 0.5":
                  "per speaker, every size, and one copy of each clip",
              "speaker, noise or telephone or room, swapped, stats dropout 0.5, probe on the reference":
                  "per speaker, every size, one copy of each clip, the probe fitted on the reference's view "
                  "(`model.probe_view`): the `reproduce` recipe since 2026-12-07"}
LEAKY_REFERENCE = "9a3f348"  # before it, a fold's training clips carried a reference made with the test speakers too


def statistics_table(fusion: dict | None) -> list[str]:
    """Speaker statistics of every size in training (``train.stats_dropout``, bench/probe_fusion.py) beside
    all of a speaker's clips and raw features: head alone and with the probe in the clip protocol, with the
    probe in the speaker protocol; the dropout's gain over plain speaker statistics paired over seeds x folds."""
    parts = (fusion or {}).get("parts", {})
    names = [n for n in ("ravdess", "emodb", "ravdess -> emodb", "emodb -> ravdess")
             if any(f"{n} ({label})" in parts for label in STATISTICS if "stats dropout" in label)]
    if not names:
        return []
    out = ["", "Speaker statistics of every size in stage 2 (`train.stats_dropout`, `bench/probe_fusion.py --normalise "
           "speaker --stats-dropout 0.5`): each training clip standardised with the training speakers' reference in "
           "half the draws (as a clip alone is scored) and otherwise with a random subset of its speaker's clips; "
           "rows with a copy also train on one noise, telephone or room copy of each clip, read in turns. UA in %; "
           "across corpora the 6 shared emotions. Runs of a commit before "
           f"{LEAKY_REFERENCE} drew their reference from every speaker's statistics, the test speakers' too "
           "(across corpora, the test corpus's), not the training speakers' alone:", "",
           "| test | features standardised | head alone, clip | head + probe, clip | head + probe, speaker protocol | "
           "head alone's gain over all the speaker's clips, clip | "
           "head + probe's gain over raw features with the copy, clip | commit |",
           "|---|---|---|---|---|---|---|---|"]
    for name in names:
        base, shipped = parts.get(f"{name} (speaker)"), parts.get(f"{name} (none, noise or telephone or room, swapped)")
        for label, what in STATISTICS.items():
            run = parts.get(f"{name} ({label})")
            if run is None:
                continue
            seeds, at = run["seeds"], lambda p, w: pct(run["test_fusion"][p][w], run["seeds"])  # noqa: E731
            gain = "" if base is None or "stats dropout" not in label else \
                gain_cell(paired_runs(clip_runs(base)["0"], clip_runs(run)["0"]))
            vs_shipped = "" if shipped is None or shipped is run or "stats dropout" not in label else \
                gain_cell(paired_runs(clip_runs(shipped)["0.5"], clip_runs(run)["0.5"]))
            commit = ", ".join(sorted({c["commit"][:7] for c in run.get("code", [])})) or "?"
            out.append(f"| {CORPORA.get(name, name)} | {what} | {at('clip', '0')} | {pct(run['protocols']['clip']['ua'], seeds)}"
                       f" | {pct(run['protocols']['speaker']['ua'], seeds)} | {gain} | {vs_shipped} | {commit} |")
    return out


def search_table(run: dict | None) -> list[str]:
    """The stage 2 search (bench/search.py): the shipped recipe against the best trials, validation speakers only."""
    if not run:
        return []
    done = [t for t in run["trials"] if t["state"] == "complete"]
    out = ["", f"Stage 2 searched with Optuna (`bench/search.py`, {run['upstream']}, {run['corpus']}, seed {run['seed']}, "
               f"{len(run['trials'])} trials, {len(done)} complete, the rest pruned): mean validation UA over "
               f"{len(run['folds'])} folds, validation speakers only (no test fold is read). Objective: the head alone.",
           "", "| trial | head alone | head + probe | probe alone | settings |", "|---|---|---|---|---|"]
    picked = {t["number"]: t for t in (run["shipped_recipe"], run["best_head"], run["best_shipped"])}
    for number, t in sorted(picked.items()):
        what = "the shipped recipe" if number == 0 else ", ".join(
            f"{k.split('.')[1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[1]} {v}" for k, v in t["params"].items())
        out.append(f"| {number} | {100 * t['val_head']:.1f} | {100 * t['val_shipped']:.1f} | {100 * t['val_probe']:.1f} "
                   f"| {what} |")
    if confirm := run.get("confirm"):
        seeds = confirm["shipped recipe"]["seeds"]
        out += ["", f"Then the test folds, once ({seeds} seed{'s' if seeds > 1 else ''}, clip protocol, paired over seeds × folds with the "
                    "shipped recipe):", "", "| | head alone | gain | head + probe | gain | probe alone |",
                "|---|---|---|---|---|---|"]
        for arm, v in confirm.items():
            gain = v.get("gain", {})
            out.append(f"| {arm} | {pct(v['head_alone'], seeds)} | {gain_cell(gain.get('head_alone'))} | "
                       f"{pct(v['shipped_mix'], seeds)} | {gain_cell(gain.get('shipped_mix'))} | "
                       f"{pct(v['probe_alone'], seeds)} |")
        if note := run.get("confirm_note"):  # a check kept from an earlier run of the search
            out += ["", f"Note: {note}."]
    return out


def encoder_table(encoders: dict | None) -> list[str]:
    """One row per upstream: extraction against the bare encoder, cache size, probe UA, predict latency."""
    if not encoders:
        return []
    commit = encoders.get("table_commit", encoders["commit"])
    out = ["", f"Encoders, side by side in one run (`bench/encoders.py`, commit {commit[:10]}). Cache: bytes "
           "per second of audio as stored (float16, 12.5 frames per second, every hidden state), and what a 7-hour "
           "corpus (IEMOCAP-sized) takes, with all layers and with every other one (`encoder.layers=::2`). Probe: "
           "time mean of every layer + logistic regression; probe and sera: UA in % on raw features (each clip alone, "
           "as for a single clip of an unknown speaker) / speaker-normalised (4 RAVDESS folds, EmoDB's 5). sera on "
           "RAVDESS: clip protocol (each test clip alone, as `sera predict`) trained unnormalised / trained "
           "speaker-normalised (the clip then standardised with the training speakers' reference statistics), and the "
           "speaker protocol of the speaker-normalised model.", "",
           "| encoder | hidden states × dim | extraction RTF (bare encoder, ratio) | cache kB/s | 7 h cache (every other "
           "layer) | probe RAVDESS | probe EmoDB | sera RAVDESS clip protocol | sera RAVDESS speaker protocol | "
           "predict 4 s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in encoders["encoders"].items():
        e, probe, sera = r["extraction"], r.get("probe", {}), r.get("sera", {})
        ua = lambda c: (f"{100 * probe[c]['raw']['ua']:.1f} / {100 * probe[c]['speaker']['ua']:.1f}"  # noqa: E731
                        if c in probe else "–")
        clip = " / ".join(sera_ua(sera, m, "clip") for m in ("none", "speaker"))
        out.append(f"| {name} | {e['hidden_states']} × {e['dim']} | {e['pipeline_rtf']:.4f} ({e['bare_encoder_rtf']:.4f}, "
                   f"{e['pipeline_over_bare']:.2f}×) | {e['cache_bytes_per_second'] / 1e3:.0f} | {e['iemocap_gb']:.1f} GB "
                   f"({e['iemocap_gb_every_other_layer']:.1f} GB) | {ua('ravdess')} | {ua('emodb')} | {clip} | "
                   f"{sera_ua(sera, 'speaker', 'speaker')} | {r['predict_4s_seconds']:.3f} s |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    q = args.quick
    baselines, adapter, fusion = load("baselines", q), load("adapter", q), load("probe_fusion", q)
    table = rows(baselines, adapter, fusion)
    text = markdown(table, baselines, adapter, load("scaling", q), load("extract_speed", q), load("demo_latency", q),
                    load("whisper_padding", q), fusion)
    text += "\n".join(encoder_table(load("encoders", q))) + "\n"
    text += "\n".join(speech_table(load("speech_only", q), load("vad_pooling", q))) + "\n"
    text += "\n".join(ablation_table(load(SHIPPED_ABLATIONS, q), "and on one noise, telephone or room copy of "
                                      "each clip, read in turns (the `reproduce` recipe on raw features)")) + "\n"
    text += "\n".join(ablation_table(load("ablations-none", q))) + "\n"
    text += "\n".join(scaling_data_table(load("scaling_data", q))) + "\n"
    text += "\n".join(stage1_audio_table(load("stage1_audio", q))) + "\n"
    text += "\n".join(search_table(load("search", q))) + "\n"
    text += "\n".join(residual_table(fusion)) + "\n"
    text += "\n".join(copies_table(fusion)) + "\n"
    text += "\n".join(statistics_table(fusion)) + "\n"
    text += "\n".join(calibration_shift_table(load("calibration_shift", q))) + "\n"
    suffix = "-quick" if q else ""
    (RESULTS / f"summary{suffix}.md").write_text(text)
    chart(table, RESULTS / f"ua_by_method{suffix}.png")
    if not q:
        page = ROOT / "docs" / "results.md"
        for picture in ("ua_by_method.png", "scaling_data.png"):
            if (RESULTS / picture).is_file():
                shutil.copyfile(RESULTS / picture, ROOT / "docs" / "assets" / picture)
        body = page.read_text()
        block = f"{BEGIN}\n{text}\n![UA per method](assets/ua_by_method.png)\n{END}"
        body, n = re.subn(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, body, flags=re.S)
        if n != 1:
            raise SystemExit(f"{page} has no {BEGIN} ... {END} block")
        page.write_text(body)
    print(text)


if __name__ == "__main__":
    main()
