"""A checkpoint folder is a Hugging Face Hub model repository: fetch one by id, push one with a card.

The card (README.md) is generated from the checkpoint's own config.json, so what it states (labels,
encoder, corpora and their licences, cross-validated figures in both test protocols) is what the
weights were trained and measured with.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import SeraError

CHECKPOINT_FILES = ["config.json", "model.safetensors", "README.md"]
REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
# The Hub's licence identifiers of the corpora sera reads; a model inherits its data's terms.
CORPUS_LICENCES = {"ravdess": "cc-by-nc-sa-4.0", "emodb": "other", "iemocap": "other", "crema-d": "odbl"}
CORPUS_CITATIONS = {
    "ravdess": "RAVDESS (Livingstone & Russo 2018), CC BY-NC-SA 4.0: non-commercial use only",
    "emodb": "EmoDB (Burkhardt et al. 2005), free for research use",
    "iemocap": "IEMOCAP (Busso et al. 2008), under USC SAIL's licence agreement",
    "crema-d": "CREMA-D (Cao et al. 2014), Open Database License",
}


def resolve_checkpoint(source: str | Path) -> Path:
    """A checkpoint's folder: ``source`` itself, or a Hub repository's snapshot (the local Hugging Face
    cache first, so a fetched model works offline; then the Hub)."""
    path = Path(source).expanduser()
    if path.is_dir() or not REPO_ID.match(str(source)):
        return path  # a folder, or a path that read_checkpoint_config will name as missing
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(source), allow_patterns=CHECKPOINT_FILES, local_files_only=True))
    except Exception:  # not in the local cache: ask the Hub
        pass
    try:
        return Path(snapshot_download(str(source), allow_patterns=CHECKPOINT_FILES))
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeraError(f"{source}: no such checkpoint folder here, and the Hugging Face Hub did not give it "
                        f"({first}). Without Hub access, download the repository where you can and pass its "
                        "folder (--checkpoint DIR or SERA_CHECKPOINT=DIR)") from None


def _pct(d: dict) -> str:
    return f"{100 * d['mean']:.1f} ± {100 * d['std']:.1f}"


def _figures(cv: dict) -> list[str]:
    rows = []
    for protocol in sorted(cv, key=lambda p: p != "clip"):
        m = cv[protocol]
        rows += [f"| {protocol} | {where} | {_pct(v['ua'])} | {_pct(v['wa'])} | {_pct(v['f1'])} |"
                 for where, v in [("all", m), *m.get("by_corpus", {}).items()]]
    return rows


def model_card(checkpoint: str | Path) -> str:
    """README.md for the checkpoint's Hub repository: YAML metadata, then what the model is and how it scores."""
    import yaml

    from .checkpoint import read_checkpoint_config

    meta = read_checkpoint_config(checkpoint)
    corpora = meta.get("corpora") or [c for c in str(meta.get("trained_on", "")).split("+") if c]
    licences = {CORPUS_LICENCES.get(c, "other") for c in corpora}
    licence = "cc-by-nc-sa-4.0" if "cc-by-nc-sa-4.0" in licences else (licences.pop() if len(licences) == 1 else "other")
    encoder = meta["encoder"]["name"]
    header = {
        "library_name": "sera", "pipeline_tag": "audio-classification", "license": licence,
        "tags": ["speech-emotion-recognition", "audio-classification", "sera"],
        "datasets": corpora, "metrics": ["unweighted_accuracy", "accuracy", "f1"],
    }
    on_hub = bool(REPO_ID.match(encoder)) and not Path(encoder).exists()
    if on_hub:
        header["base_model"] = encoder
    labels = meta["labels"]
    features = {"speaker": "standardised per speaker (a clip alone uses the training speakers' reference statistics)",
                "utterance": "each clip standardised with its own statistics: no speaker statistics needed"}.get(
        meta.get("normalise", "none"), "as the encoder gives them: no speaker statistics needed")
    cv = meta.get("cv", {})
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# sera speech emotion recognition: {', '.join(labels)}", "",
        f"A small adapter and classifier trained by [sera](https://github.com/sera-ser/sera) on the frozen encoder "
        f"`{encoder}` ({meta['num_layers']} hidden states of {meta['dim']}): WAP over layers, a light Transformer, "
        "SAP pooling and a linear head"
        + (f", whose probabilities are averaged with a linear probe on every layer's time mean (weight "
           f"{meta['model']['probe_weight']:g})" if meta.get("model", {}).get("probe_weight", 0) > 0 else "")
        + ". The encoder's own weights are not in this repository; sera loads them "
        + ("from their id (or a local copy with the same weights, checked by content)." if on_hub else
           "from the folder named above, which was local to the training machine: pass a copy of the same weights "
           "with `--encoder` (checked by content)."), "",
        f"- **Labels** ({len(labels)}): {', '.join(labels)}",
        f"- **Trained on**: {', '.join(CORPUS_CITATIONS.get(c, c) for c in corpora) or 'unrecorded'}",
        f"- **Features**: {features}",
        "",
        "## Use", "", "```python", "from sera.predict import Predictor", "",
        'predictor = Predictor.from_pretrained("USER/NAME")  # or a local folder', 'print(predictor.predict_file("clip.wav").top(3))',
        "```", "", "or `sera predict --checkpoint USER/NAME clip.wav`; the demo runs as a Space with "
        "`SERA_CHECKPOINT=USER/NAME`.", "",
    ]
    if cv:
        lines += ["## Cross-validated figures", "",
                  "Speaker-independent folds, in % (mean ± std over seeds). **clip** protocol: each test clip alone, as "
                  "`sera predict` and the demo see one clip of an unknown speaker; **speaker** protocol: each test "
                  "speaker standardised with all their own clips. Rows per corpus count that corpus's clips and "
                  "classes only.", "",
                  "| protocol | corpus | UA | WA | macro-F1 |", "|---|---|---|---|---|", *_figures(cv), ""]
    lines += ["## Limits", "", "Acted speech of a few dozen speakers: expect lower figures on spontaneous speech, other "
              "languages and other microphones. Emotion recognition from voice is uncertain; do not use it to make "
              "decisions about people.", ""]
    return "\n".join(lines)


def push(checkpoint: str | Path, repo_id: str, private: bool = False, token: str | None = None,
         endpoint: str | None = None) -> str:
    """Write the card into the checkpoint folder and upload config, weights and card; returns the commit URL."""
    from huggingface_hub import HfApi

    from .io import atomic_write_text

    checkpoint = Path(checkpoint)
    if not REPO_ID.match(repo_id):
        raise SeraError(f"{repo_id!r}: a Hub repository id is USER/NAME")
    atomic_write_text(checkpoint / "README.md", model_card(checkpoint))
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(checkpoint), repo_id=repo_id, allow_patterns=CHECKPOINT_FILES,
                                 commit_message="sera checkpoint")
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SeraError(f"could not push {checkpoint} to {repo_id} ({first}); log in with `hf auth login` or pass "
                        "--token") from None
    return str(getattr(info, "commit_url", info))
