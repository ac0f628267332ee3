"""The frozen upstream: a transformers speech model that returns every layer's frame features.

One interface over HuBERT, wav2vec 2.0, WavLM, data2vec-audio (anything with
``_get_feat_extract_output_lengths``) and the Whisper encoder. Output per clip: a tensor
(layers + 1, frames, dim) at 50 frames per second. Nothing here trains; the adapter
(``sera.model``) is the downstream part.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import SAMPLE_RATE, EncoderConfig
from .errors import EncoderError

CHUNK_SECONDS = 30.0  # longer clips run in 30 s pieces: Whisper's limit, and it bounds attention memory
_PADDING_SAFE = {"hubert", "wav2vec2", "wavlm", "unispeech", "unispeech-sat"}
# config keys that say where or how a model was saved, not what it computes
_VOLATILE_CONFIG_KEYS = {"_name_or_path", "transformers_version", "_commit_hash", "torch_dtype", "dtype", "architectures",
                         "processor_class", "feature_extractor_type"}
EXTRACTION_VERSION = 2  # raise when this module computes features differently: old caches and checkpoints then refuse


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_encoder_config(name: str):
    """The transformers config of a hub id or local folder, and where to load it from.

    Cheap (no weights), so the cache can name an encoder's features without loading it.
    """
    import transformers
    from transformers import AutoConfig

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    local = Path(name).expanduser()
    looks_like_path = local.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not local.is_dir():
        raise EncoderError(f"{name}: no such encoder folder")
    source = str(local) if local.is_dir() else name
    try:
        return AutoConfig.from_pretrained(source), source
    except (OSError, ValueError) as e:
        if local.is_dir():
            raise EncoderError(f"{name}: not a transformers model folder ({str(e).splitlines()[0]})") from None
        raise EncoderError(
            f"could not load encoder {name!r} from the Hugging Face hub ({str(e).splitlines()[0]}). "
            "Without hub access, download the model where you can and pass its folder with "
            "--encoder PATH or SERA_ENCODER=PATH."
        ) from None


def encoder_identity(cfg: EncoderConfig, config=None, source: str | None = None) -> tuple[str, dict]:
    """(key, identity): everything that changes an encoder's features, hashed into a folder name.

    Content only, never location or hardware: the same weights in another folder, on another
    machine or behind a hub id give the same key, so caches and checkpoints travel with them.
    """
    if config is None:
        config, source = load_encoder_config(cfg.name)
    folder = model_folder(source or cfg.name)  # resolved once: the hub cache is looked up once
    is_whisper = config.model_type == "whisper"
    identity = {
        "model_type": config.model_type,
        "config": {k: v for k, v in config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS},
        "weights": weight_digests(source or cfg.name, folder),
        "preprocessor": _preprocessor(folder),
        "whisper_padded": is_whisper and cfg.whisper_padded,
        "layers": select_layers(cfg.layers, num_hidden_states(config)),
        "sample_rate": SAMPLE_RATE,
        "extraction": EXTRACTION_VERSION,
    }
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return f"{config.model_type}-{digest}", identity


def content_fingerprint(cfg: EncoderConfig) -> dict | None:
    """What an encoder's features follow from, read as raw file contents (no transformers import): the SHA-256 of
    its config and feature extractor files and its weights, with the settings ``encoder_identity`` hashes beside
    them. A checkpoint records it; a folder whose fingerprint equals the recorded one gives the recorded key, since
    the identity is a function of these. None for a model that is not in a local folder."""
    folder = model_folder(cfg.name)
    if folder is None or not (folder / "config.json").is_file():
        return None
    files = {n: _sha256(folder / n) for n in ("config.json", "preprocessor_config.json") if (folder / n).is_file()}
    return {"files": {**files, **weight_digests(str(folder), folder)}, "whisper_padded": cfg.whisper_padded,
            "layers": cfg.layers, "sample_rate": SAMPLE_RATE, "extraction": EXTRACTION_VERSION}


def _light_whisper_config(folder: Path):
    """A Whisper folder's ``config.json`` as attributes, read without transformers; None for another model, or
    one whose file lacks a setting the encoder needs (transformers then fills in its defaults)."""
    from types import SimpleNamespace

    from .whisper import WhisperEncoderConfig

    try:
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    needed = {"model_type", "activation_function", *WhisperEncoderConfig.__dataclass_fields__}
    return SimpleNamespace(**raw) if raw.get("model_type") == "whisper" and needed <= set(raw) else None


def num_hidden_states(config) -> int:
    """Hidden states a model reports: the embeddings plus one per transformer layer."""
    return (config.encoder_layers if config.model_type == "whisper" else config.num_hidden_layers) + 1


def select_layers(spec: str, n: int) -> list[int]:
    """``EncoderConfig.layers`` -> sorted hidden-state indices: "" all, "0,6,12" those, "::2" a slice."""
    spec = spec.strip()
    if not spec:
        return list(range(n))
    try:
        if ":" in spec:
            picked = list(range(n))[slice(*[int(p) if p.strip() else None for p in spec.split(":")])]
        else:
            picked = sorted({int(p) for p in spec.split(",")})
    except (ValueError, TypeError):
        picked = []
    if not picked or not all(0 <= i < n for i in picked):
        raise EncoderError(f"encoder.layers {spec!r}: expected indices like '0,6,12' or a slice like '::2' "
                           f"of the model's {n} hidden states (0 to {n - 1})")
    return picked


def model_folder(source: str) -> Path | None:
    """Where a model's files are: its local folder, or a hub id's snapshot in the Hugging Face cache."""
    if Path(source).is_dir():
        return Path(source)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not downloaded yet (or not a hub id): the hub's own file list is asked instead
        return None


def _weight_files(names: list[str]) -> list[str]:
    """The files transformers loads weights from: safetensors when there are any, else PyTorch pickles."""
    safetensors = sorted(n for n in names if n.endswith(".safetensors"))
    return safetensors or sorted(n for n in names if n.endswith((".bin", ".pt", ".pth")))


def weight_digests(source: str, folder: Path | None) -> dict[str, str]:
    """SHA-256 of each weight file in ``folder`` (``model_folder(source)``), read whole. The hub names each
    LFS file by its SHA-256, so a hub id and a local copy of the same files agree; a cached hub file is not
    even read again, and without one the hub's file list is asked."""
    if folder is not None:
        names = _weight_files([f.name for f in folder.iterdir() if f.is_file()])
        return {n: _sha256(folder / n) for n in names}
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(source, files_metadata=True)
    except Exception as e:
        raise EncoderError(
            f"could not read the weight files of encoder {source!r} ({str(e).splitlines()[0] if str(e) else e}). "
            "Without hub access, download the model where you can and pass its folder with "
            "--encoder PATH or SERA_ENCODER=PATH."
        ) from None
    lfs = {s.rfilename: s.lfs.sha256 for s in info.siblings or [] if getattr(s, "lfs", None)}
    return {n: lfs[n] for n in _weight_files(list(lfs))}


def _sha256(path: Path) -> str:
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:  # the hub cache: the blob's name is its SHA-256
        return real.name
    stat = real.stat()
    return _sha256_of(str(real), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a rewritten file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def _preprocessor(folder: Path | None) -> dict | None:
    """The feature extractor's settings (``preprocessor_config.json``): they change the encoder's input."""
    path = folder / "preprocessor_config.json" if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EncoderError(f"{path}: unreadable feature extractor settings ({e})") from None
    return {k: v for k, v in settings.items() if k not in _VOLATILE_CONFIG_KEYS}


def reduce_frames(h: torch.Tensor, stride: int) -> torch.Tensor:
    """(L, T, D) -> (L, T // stride, D) by averaging neighbouring frames (at least one frame kept)."""
    if stride <= 1 or h.shape[1] < stride:
        return h
    L, T, D = h.shape
    return h[:, : T // stride * stride].float().reshape(L, T // stride, stride, D).mean(2).to(h.dtype)


def _load_pretrained(name: str, device: torch.device, config=None):
    """Load config, model and feature extractor from a hub id or a local folder (``config``: already read)."""
    config, source = (config, name) if config is not None else load_encoder_config(name)
    if config.model_type == "whisper":
        from .whisper import LogMel, load_whisper_encoder

        folder = model_folder(source)  # local weights load without transformers' Whisper module (seconds faster)
        model = load_whisper_encoder(folder, config) if folder is not None else None
        if model is None:
            from transformers import WhisperModel

            model = WhisperModel.from_pretrained(source, dtype=torch.float32).get_encoder()
            folder = model_folder(source)
        try:
            fe = LogMel.of_folder(folder, config.num_mel_bins)  # WhisperFeatureExtractor's, bit for bit (tests)
        except ValueError as e:
            raise EncoderError(f"{name}: {e}") from None
    else:
        from transformers import AutoFeatureExtractor, AutoModel  # only here: AutoModel alone takes half a second

        model = AutoModel.from_pretrained(source, dtype=torch.float32)
        if not hasattr(model, "_get_feat_extract_output_lengths"):
            raise EncoderError(f"{name}: model type {config.model_type!r} is not a supported speech encoder "
                               "(HuBERT, wav2vec 2.0, WavLM, data2vec-audio or Whisper)")
        try:
            fe = AutoFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            from transformers import Wav2Vec2FeatureExtractor

            layer_norm = getattr(config, "feat_extract_norm", "group") == "layer"
            fe = Wav2Vec2FeatureExtractor(do_normalize=layer_norm, return_attention_mask=layer_norm)
    model.eval().requires_grad_(False).to(device)
    if device.type == "cuda":
        model.half()  # inference only: float16 is safe for these encoders and halves memory
    return config, model, fe, source


def whisper_states(enc: torch.nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """Whisper's encoder (``sera.whisper`` or transformers') on log-mel frames of the clip's real length, or of
    30 s as transformers pads them: (B, n_mels, M) -> every hidden state (L+1, B, ceil(M / 2), D), as
    ``WhisperModel(..., output_hidden_states=True)`` gives them on 30 s. ``sera.export`` traces this too."""
    x = F.gelu(enc.conv1(mel))
    x = F.gelu(enc.conv2(x)).permute(0, 2, 1)  # (B, T, D)
    x = x + enc.embed_positions.weight[: x.shape[1]]
    hidden = [x]
    for layer in enc.layers:
        x = layer(x, None)
        x = x[0] if isinstance(x, tuple) else x
        hidden.append(x)
    hidden[-1] = enc.layer_norm(x)  # transformers reports the last layer after the final norm
    return torch.stack(hidden)


class Encoder:
    """A frozen speech encoder: ``encoder([wave, ...])`` -> [(layers, frames, dim), ...] float32, where
    ``layers`` are the hidden states ``EncoderConfig.layers`` keeps (all by default: embeddings + blocks)."""

    frame_rate = 50  # frames per second for every supported model

    def __init__(self, cfg: EncoderConfig | None = None, known: dict | None = None):
        """``known``: a checkpoint's record of its encoder (``key`` and ``fingerprint``). When this folder's
        ``content_fingerprint`` is the recorded one, the key is the recorded key and a Whisper encoder loads
        without importing transformers (``sera predict`` starts half a second sooner)."""
        self.cfg = cfg or EncoderConfig()
        self.device = resolve_device(self.cfg.device)
        self._identity: dict | None = None
        same = bool(known and known.get("fingerprint")) and content_fingerprint(self.cfg) == known["fingerprint"]
        light = _light_whisper_config(model_folder(self.cfg.name)) if same else None  # type: ignore[arg-type]
        self.config, self.model, self.feature_extractor, source = _load_pretrained(self.cfg.name, self.device, light)
        self.is_whisper = self.config.model_type == "whisper"
        self.layers = select_layers(self.cfg.layers, num_hidden_states(self.config))  # hidden states kept
        self.num_layers = len(self.layers)
        self.dim = self.config.hidden_size if not self.is_whisper else self.config.d_model
        # Batching pads clips, which must not change their features. That holds for HuBERT / wav2vec 2.0 /
        # WavLM with a layer-norm front end and an attention mask, not for group-norm ones (wav2vec2-base),
        # data2vec-audio (its stacked positional convs see the padding) or Whisper: those run one clip a pass.
        self.supports_padding = self.config.model_type in _PADDING_SAFE and bool(
            getattr(self.feature_extractor, "return_attention_mask", False)
        )
        if same:
            self.key = known["key"]  # type: ignore[index]
        else:
            self.key, self._identity = encoder_identity(self.cfg, self.config, source)

    @property
    def identity(self) -> dict:
        """What the key hashes (a cache records it); computed when first asked where the key came from a record."""
        if self._identity is None:
            key, self._identity = encoder_identity(self.cfg)
            if key != self.key:
                raise EncoderError(f"{self.cfg.name}: its identity gives key {key}, its record {self.key}")
        return self._identity

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @torch.inference_mode()
    def __call__(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        """Every layer's features for each 16 kHz mono clip; long clips run in 30 s pieces."""
        out: list[torch.Tensor | None] = [None] * len(waves)
        pieces = []  # (clip index, piece index, samples)
        for i, w in enumerate(waves):
            n = max(1, math.ceil(len(w) / (CHUNK_SECONDS * SAMPLE_RATE)))
            step = math.ceil(len(w) / n)
            pieces += [(i, j, w[j * step : (j + 1) * step]) for j in range(n)]
        results: dict[tuple[int, int], torch.Tensor] = {}
        for batch in self._batches(pieces):
            for (i, j, _), feats in zip(batch, self._forward([p[2] for p in batch])):
                results[(i, j)] = feats
        for i in range(len(waves)):
            parts = [results[k] for k in sorted(k for k in results if k[0] == i)]
            out[i] = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        if len(self.layers) < num_hidden_states(self.config):
            out = [h[self.layers] for h in out]  # type: ignore[index]
        return out  # type: ignore[return-value]

    def _batches(self, pieces: list) -> list[list]:
        """Length-bucketed batches of about ``batch_seconds`` audio (one clip each where padding is unsafe)."""
        if not self.supports_padding:
            return [[p] for p in pieces]
        order = sorted(pieces, key=lambda p: len(p[2]))
        batches, current, budget = [], [], self.cfg.batch_seconds * SAMPLE_RATE
        for p in order:
            if current and len(p[2]) * (len(current) + 1) > budget:
                batches.append(current)
                current = []
            current.append(p)
        return batches + ([current] if current else [])

    def _forward(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        if self.is_whisper:
            return [self._whisper(w) for w in waves]
        return self._wav2vec_family(waves)

    def _wav2vec_family(self, waves: list[np.ndarray]) -> list[torch.Tensor]:
        lengths = torch.tensor([len(w) for w in waves])
        x = torch.zeros(len(waves), int(lengths.max()))  # (B, S)
        for i, w in enumerate(waves):
            x[i, : len(w)] = torch.from_numpy(w)
        mask = torch.arange(x.shape[1])[None, :] < lengths[:, None]  # (B, S) True on real samples
        if getattr(self.feature_extractor, "do_normalize", False):  # zero mean, unit variance per clip
            n = lengths[:, None].float()
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) ** 2 * mask).sum(1, keepdim=True) / n
            x = ((x - mean) / torch.sqrt(var + 1e-7)) * mask
        dtype = next(self.model.parameters()).dtype
        kwargs = {"attention_mask": mask.long().to(self.device)} if self.supports_padding else {}
        hidden = self.model(x.to(self.device, dtype), output_hidden_states=True, **kwargs).hidden_states
        stacked = torch.stack(hidden)  # (L+1, B, T, D)
        frames = self.model._get_feat_extract_output_lengths(lengths)
        return [stacked[:, i, : int(frames[i])].float().cpu() for i in range(len(waves))]

    def _whisper(self, wave: np.ndarray) -> torch.Tensor:
        """Whisper on the clip's real length (default) or padded to 30 s as transformers does."""
        enc, dtype = self.model, next(self.model.parameters()).dtype
        padded = self.cfg.whisper_padded
        mel = self.feature_extractor(wave, padded).to(self.device, dtype)  # (1, n_mels, M)
        valid = math.ceil(min(len(wave) // 160, 3000) / 2)  # encoder frames that cover real audio
        return whisper_states(enc, mel)[:, 0, :valid].float().cpu()  # (L+1, T, D); padded: all 1500 positions
