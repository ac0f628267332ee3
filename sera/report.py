"""A cross-validation's results as people read them: ``results.md`` (the tables, headline protocol
first), ``results.json`` and the confusion matrix picture."""

from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write_text


def led(d: dict, lead: str) -> list[tuple[str, dict]]:
    """``d``'s (protocol, value) pairs, the headline protocol first."""
    return sorted(d.items(), key=lambda kv: kv[0] != lead)


PROTOCOL_NOTES = {
    "clip": "clip protocol: each test clip alone, as `sera predict` sees one clip of an unknown speaker",
    "speaker": "speaker protocol: each test speaker standardised with all their own clips",
}


def results_markdown(results: dict, title: str = "") -> str:
    def ms(d: dict) -> str:
        return f"{100 * d['mean']:.2f} ± {100 * d['std']:.2f}"

    tag = "" if results["speaker_independent"] else " — **SPEAKER-DEPENDENT split**"
    seeds = len(results["per_seed"])
    lead = results["protocol"]
    lines = [
        f"# {title or results['corpus']}{tag}",
        "",
        f"{results['utterances']} utterances, {len(results['labels'])} classes, {len(results['per_fold'])} folds, "
        f"{seeds} seed(s); mean ± std over seeds (%). Headline: {PROTOCOL_NOTES[lead]}.",
        "",
        "| protocol | folds | UA | WA | macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for protocol, r in led(results["protocols"], lead):
        name = f"**{protocol}**" if protocol == lead else protocol
        lines.append(f"| {name} | **all** | {ms(r['ua'])} | {ms(r['wa'])} | {ms(r['f1'])} |")
        lines += [f"| {protocol} | {c} (its clips, its classes) | {ms(m['ua'])} | {ms(m['wa'])} | {ms(m['f1'])} |"
                  for c, m in r.get("by_corpus", {}).items()]
        lines += [f"| {protocol} | {f['fold']} | {ms(f['ua'])} | {ms(f['wa'])} | {ms(f['f1'])} |" for f in r["per_fold"]]
    ensembles = [(p, r["seed_ensemble"]) for p, r in led(results["protocols"], lead) if "seed_ensemble" in r]
    if ensembles:
        lines += ["", f"The {seeds} seeds' models as one ensemble (test probabilities averaged): " + "; ".join(
            f"{p} protocol UA {100 * e['ua']:.2f} ({100 * e['mean_gain']:+.2f} over one seed, "
            f"{e['folds_gained']}/{len(e['per_fold'])} folds gained)" for p, e in ensembles) + "."]
    calibrated = [(p, r) for p, r in led(results["protocols"], lead) if "ece" in r]
    if calibrated:
        lines += ["", "Calibration (expected calibration error of the test clips' top-class probability, 10 bins, mean "
                  "± std over seeds × folds): " + "; ".join(
                      f"{p} protocol {r['ece']['mean']:.3f} ± {r['ece']['std']:.3f} as trained, "
                      f"{r['ece_calibrated']['mean']:.3f} ± {r['ece_calibrated']['std']:.3f} with the temperature fitted "
                      "on validation speakers" for p, r in calibrated) + f" (median T = {results.get('temperature', 1.0):.2f})."]
    other = [p for p in results["protocols"] if p != lead]
    lines += ["", f"Other protocol{'s' if len(other) > 1 else ''}: " + "; ".join(PROTOCOL_NOTES[p] for p in other) + "."]
    labels = results["labels"]
    lines += ["", f"Confusion matrix, {lead} protocol (rows: true, columns: predicted; summed over folds and seeds)", "",
              "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {labels[i]} | " + " | ".join(str(v) for v in row) + " |" for i, row in enumerate(results["confusion"])]
    t = results["timing"]
    lines += ["", f"Stage 1: {t['stage1_seconds_per_epoch']:.1f} s/epoch; stage 2: {t['stage2_seconds_per_epoch']:.1f} s/epoch; "
              f"training in all: {t['total_seconds'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def write_results(results: dict, out: str | Path, title: str = "") -> None:
    from .plots import save_confusion

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    atomic_write_text(out / "results.md", results_markdown(results, title))
    save_confusion(results["confusion"], results["labels"], out / "confusion.png",
                   f"{title or results['corpus']}: UA {100 * results['ua']['mean']:.1f}% ({results['protocol']} protocol)")
