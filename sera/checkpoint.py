"""Checkpoints: a folder with config.json and model.safetensors, nothing pickled.

The config names the encoder (its identity key, which depends on content only), the layer count
and width of its features and the label names, so a checkpoint is never used with features it
was not trained on. ``format`` versions the file: a setting an older checkpoint lacks takes the
value that checkpoint was trained with, never today's default.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import __version__
from .config import NORMALISATIONS, ModelConfig, SeraConfig, _build
from .domain import DomainCheck
from .errors import EncoderError, SeraError
from .io import atomic_write, atomic_write_text
from .model import EmotionClassifier, LocalAttributes, TeacherStudent
from .features import Stats


def _write(path: Path, state: dict[str, torch.Tensor], meta: dict) -> Path:
    state = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    atomic_write(path / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    atomic_write_text(path / "config.json", json.dumps(meta, indent=2))  # written last: marks the folder complete
    return path


FORMAT = 4  # 1: sera 0.1 before content identity (no "format" field); 2: content identity, encoder.layers;
#            3: model.probe_weight; 4: model.drop_path, model.residual_probe
# Model settings each format added: an older checkpoint lacks them and was trained with these values.
ADDED_IN = {2: {"layer_norm": False}, 3: {"probe_weight": 0.0}, 4: {"drop_path": 0.0, "residual_probe": False}}


def _fingerprint(cfg: SeraConfig, encoder_key: str) -> dict | None:
    """The encoder folder's ``content_fingerprint``, where its files gave ``encoder_key`` (a checkpoint saved
    for another folder's features records none): ``Predictor`` then knows the key without recomputing it."""
    from .encoders import content_fingerprint, encoder_identity

    try:
        fingerprint = content_fingerprint(cfg.encoder)
        return fingerprint if fingerprint is not None and encoder_identity(cfg.encoder)[0] == encoder_key else None
    except (EncoderError, OSError):
        return None


def _meta(kind: str, cfg: SeraConfig, encoder_key: str, num_layers: int, dim: int, labels: list[str]) -> dict:
    return {
        "format": FORMAT,
        "sera_version": __version__,
        "kind": kind,
        "encoder": {"name": cfg.encoder.name, "key": encoder_key, "whisper_padded": cfg.encoder.whisper_padded,
                    "layers": cfg.encoder.layers,
                    # only Predictor reads it: an adapter (saved by every fold's stage 1) need not hash the weights
                    "fingerprint": _fingerprint(cfg, encoder_key) if kind == "classifier" else None},
        "num_layers": num_layers,
        "dim": dim,
        "labels": labels,
        "normalise": cfg.data.normalise,
        "model": cfg.model.__dict__,
        "audio": cfg.audio.__dict__,
        "vad": cfg.vad.__dict__,
        "calibration": cfg.calibration.__dict__,
    }


def save_checkpoint(path: str | Path, model: EmotionClassifier, cfg: SeraConfig, labels: list[str],
                    encoder_key: str, num_layers: int, dim: int, extra: dict | None = None,
                    reference: Stats | None = None, attributes: LocalAttributes | None = None,
                    domain: DomainCheck | None = None) -> Path:
    """``reference``: speaker-normalisation statistics for clips of unknown speakers (sera/normalise.py);
    ``attributes``: the local attributes of the model's frames (train.final_attributes), for pictures;
    ``domain``: the training clips' domain check (sera/calibrate.py), for predict's out-of-domain flag."""
    meta = {**_meta("classifier", cfg, encoder_key, num_layers, dim, labels), **(extra or {})}
    state = dict(model.state_dict())
    if reference is not None:
        state |= {"normalise.mean": reference.mean, "normalise.std": reference.std}
    if domain is not None:
        state |= {"domain.mean": domain.stats.mean, "domain.std": domain.stats.std}
        meta["domain_threshold"] = domain.threshold
    if attributes is not None and attributes.centroids is not None:
        state["attributes.centroids"] = attributes.centroids
    return _write(Path(path), state, meta)


def save_adapter(path: str | Path, model: TeacherStudent, attrs: LocalAttributes, cfg: SeraConfig,
                 encoder_key: str, num_layers: int, dim: int, extra: dict | None = None) -> Path:
    """Stage 1's result: teacher and student, their heads, and the local-attribute centroids."""
    state = dict(model.state_dict())
    if attrs.centroids is not None:
        state["attributes.centroids"] = attrs.centroids
    meta = {**_meta("adapter", cfg, encoder_key, num_layers, dim, []), "attribute_refits": attrs.refits, **(extra or {})}
    return _write(Path(path), state, meta)


def _check_encoder(path: Path, meta: dict, encoder_key: str | None) -> None:
    if encoder_key is None or meta["encoder"]["key"] == encoder_key:
        return
    if meta.get("format", 1) < 2:  # its key hashed the model's path: the content cannot be compared
        warnings.warn(f"{path}: a checkpoint from before encoder identity by content (format 1); it was trained "
                      f"on {meta['encoder']['name']!r}, and sera cannot check that the encoder given is the same",
                      stacklevel=3)
        return
    raise EncoderError(
        f"{path}: checkpoint was trained on features of encoder {meta['encoder']['name']!r} "
        f"({meta['encoder']['key']}); the encoder given ({encoder_key}) computes other features: its weights, "
        "config, feature extractor or layer selection differ. Give the same model (any folder or hub id holding it)"
    )


def model_config(path: Path, meta: dict) -> ModelConfig:
    """The checkpoint's model settings; a missing one is filled only with the value it was trained with."""
    given = dict(meta["model"])
    for added, settings in ADDED_IN.items():
        if meta.get("format", 1) < added:
            given = {**settings, **given}
    missing = [f.name for f in dataclasses.fields(ModelConfig) if f.name not in given]
    if missing:
        raise SeraError(f"{path}/config.json: model setting(s) {', '.join(missing)} missing; today's defaults "
                        "might compute something else than this checkpoint was trained with, so it is not loaded")
    return _build(ModelConfig, given, f"{path}/config.json:model")


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path / "model.safetensors"))
    except Exception as e:
        raise SeraError(f"{path / 'model.safetensors'}: corrupt checkpoint weights ({e})") from None


def load_adapter(path: str | Path, encoder_key: str | None = None) -> tuple[TeacherStudent, LocalAttributes, dict]:
    """Stage 1's teacher-student pair and centroids; refuses another encoder's adapter or a classifier."""
    path = Path(path)
    meta = read_checkpoint_config(path)
    if meta.get("kind") != "adapter":
        raise SeraError(f"{path}: a {meta.get('kind', 'classifier')} checkpoint, not a stage 1 adapter (sera pretrain)")
    _check_encoder(path, meta, encoder_key)
    mcfg = model_config(path, meta)
    state = _load_state(path)
    attrs = LocalAttributes(mcfg.num_attributes)
    attrs.centroids = state.pop("attributes.centroids", None)
    attrs.refits = meta.get("attribute_refits", 0) if isinstance(meta.get("attribute_refits"), int) else 0
    model = _instantiate(path, lambda: TeacherStudent(mcfg, meta["num_layers"], meta["dim"]), state)
    return model, attrs, meta


def _instantiate(path: Path, make: Callable[[], torch.nn.Module], state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """Build the model on the meta device, then adopt the file's tensors: whatever sizes a config
    claims cost no memory, and weights of another shape are refused before anything is allocated."""
    try:
        with torch.device("meta"):
            model = make()
        model.load_state_dict(state, assign=True)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, AssertionError, OverflowError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SeraError(f"{path}: weights do not match the checkpoint's config ({first})") from None
    return model


def read_checkpoint_config(path: str | Path) -> dict:
    path = Path(path)
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise SeraError(f"{path}: not a sera checkpoint (needs config.json and model.safetensors)")
    where = path / "config.json"
    try:
        meta = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeraError(f"{where}: corrupt checkpoint config ({type(e).__name__}: {e})") from None
    problem = _meta_problem(meta)
    if problem:
        raise SeraError(f"{where}: corrupt checkpoint config ({problem})")
    return meta


def _meta_problem(meta: Any) -> str | None:
    """What is wrong with a checkpoint's config.json, if anything: every field code reads is checked
    here, since a checkpoint may come from anywhere."""
    def count(v: Any) -> bool:
        return type(v) is int and v > 0

    if not isinstance(meta, dict):
        return f"expected a JSON object, got {type(meta).__name__}"
    enc = meta.get("encoder")
    fmt = meta.get("format", 1)
    if type(fmt) is int and fmt > FORMAT:
        return f"format {fmt} is newer than this sera reads ({FORMAT}); update sera"
    checks = {
        "format": type(fmt) is int and fmt >= 1,
        "kind": meta.get("kind", "classifier") in ("classifier", "adapter"),
        "encoder": isinstance(enc, dict) and isinstance(enc.get("name"), str) and isinstance(enc.get("key"), str)
        and isinstance(enc.get("whisper_padded", False), bool) and isinstance(enc.get("layers", ""), str)
        and isinstance(enc.get("fingerprint") or {}, dict),
        "num_layers": count(meta.get("num_layers")),
        "dim": count(meta.get("dim")),
        "labels": isinstance(meta.get("labels"), list) and all(isinstance(x, str) for x in meta["labels"])
        and (bool(meta["labels"]) or meta.get("kind") == "adapter"),
        "normalise": meta.get("normalise", "none") in NORMALISATIONS,
        "model": isinstance(meta.get("model"), dict),
        "audio": isinstance(meta.get("audio", {}), dict),
        "vad": isinstance(meta.get("vad", {}), dict),
        "calibration": isinstance(meta.get("calibration", {}), dict),
        "temperature": type(meta.get("temperature", 1.0)) in (int, float) and meta.get("temperature", 1.0) > 0,
        "domain_threshold": type(meta.get("domain_threshold", 0.0)) in (int, float),
    }
    bad = [name for name, ok in checks.items() if not ok]
    return f"missing or invalid: {', '.join(bad)}" if bad else None


def load_checkpoint(path: str | Path, encoder_key: str | None = None) -> tuple[EmotionClassifier, dict]:
    """The classifier in eval mode and its config; refuses a checkpoint made for another encoder."""
    model, meta, *_ = load_classifier(path, encoder_key)
    return model, meta


def load_classifier(path: str | Path, encoder_key: str | None = None, meta: dict | None = None
                    ) -> tuple[EmotionClassifier, dict, Stats | None, LocalAttributes | None, DomainCheck | None]:
    """``load_checkpoint`` plus what the checkpoint keeps beside the model (``load_extras``), from one
    read of the weights; ``meta``: its config when the caller has read it already."""
    path = Path(path)
    meta = meta or read_checkpoint_config(path)
    if meta.get("kind", "classifier") != "classifier":
        raise SeraError(f"{path}: a stage 1 adapter (no classifier head); fine-tune it first with sera finetune")
    _check_encoder(path, meta, encoder_key)
    mcfg = model_config(path, meta)
    state = _load_state(path)
    reference, attributes, domain = _pop_extras(state, mcfg.num_attributes)
    if domain is not None:
        domain.threshold = float(meta.get("domain_threshold", float("inf")))
    model = _instantiate(path, lambda: EmotionClassifier(mcfg, meta["num_layers"], meta["dim"], len(meta["labels"])),
                         state)
    model.eval()
    return model, meta, reference, attributes, domain


def _pop_extras(state: dict[str, torch.Tensor], k: int
                ) -> tuple[Stats | None, LocalAttributes | None, DomainCheck | None]:
    mean, std, centroids, domain_mean, domain_std = (state.pop(n, None) for n in (
        "normalise.mean", "normalise.std", "attributes.centroids", "domain.mean", "domain.std"))
    attributes = None
    if centroids is not None:
        attributes = LocalAttributes(k)
        attributes.centroids = centroids
    domain = DomainCheck(Stats(domain_mean, domain_std), float("inf")) if domain_mean is not None else None
    return (Stats(mean, std) if mean is not None else None), attributes, domain


def load_extras(path: str | Path) -> tuple[Stats | None, torch.Tensor | None]:
    """What a classifier checkpoint keeps besides the model: the speaker-normalisation reference
    statistics and the local-attribute centroids (k, H), each None when absent."""
    reference, attributes, _ = _pop_extras(_load_state(Path(path)), 0)
    return reference, attributes.centroids if attributes is not None else None


def model_state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
