"""Inference: audio file or signal -> emotion probabilities, with the pictures' ingredients.

The encoder loads once; each clip runs encoder -> frame-rate reduction -> adapter -> SAP -> head.
A clip is scored whole, as the model was trained. Longer audio is cut where its speech is
(Silero VAD, sera/vad.py): turns split at pauses, at most ``AudioConfig.window_seconds`` each, the
non-speech between them skipped. Each piece is scored before the next is read, so time grows with
the speech and memory stays flat; the pieces give an emotion timeline. A recording without speech
is refused rather than guessed at (``VadConfig.enabled=False`` scores fixed windows, speech or not).

A clip of an unknown speaker is scored alone (the clip protocol). Where several clips of one speaker
are known (``enrol``, ``predict_files(..., same_speaker=True)``), their statistics are used: a
speaker-normalised checkpoint standardises with them instead of the training speakers' reference
statistics, and an unnormalised one maps the speaker's features onto the training speakers'
statistics. Measured with the linear probe on whisper-base (docs/bench-notes.md), this pays
only with many clips of varied emotion: about 16 or more; with 4 or fewer it costs accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .audio import load_audio, prepare_audio, windows
from .calibrate import flags, temper, warning
from .checkpoint import load_classifier, read_checkpoint_config
from .config import SAMPLE_RATE, AudioConfig, CalibrationConfig, EncoderConfig, VadConfig, _build
from .encoders import Encoder, reduce_frames
from .errors import AudioError, SeraError
from .hub import resolve_checkpoint
from .inference import classify_clip
from .features import Stats
from .normalise import clip_stats
from .vad import Region, as_array, frame_times, regions, speech_frames, speech_probabilities, speech_segments


@dataclass
class Prediction:
    probabilities: dict[str, float]  # label -> probability, highest first (duration-weighted over windows)
    attention: np.ndarray  # (T,) SAP attention over frames, each piece's summing to 1 (empty for mean pooling)
    frame_rate: float  # frames per second of ``attention``
    layer_weights: np.ndarray  # (L,) WAP weights
    windows: np.ndarray  # (W, 2) start and end second of each piece scored (one row for a clip)
    window_probabilities: np.ndarray  # (W, C) class probabilities per piece, columns in ``labels`` order
    labels: list[str]  # the checkpoint's label order
    attributes: np.ndarray  # (T,) local-attribute cluster id of each frame (empty if the checkpoint has none)
    frame_times: np.ndarray  # (T,) second of each frame's centre in the recording (pieces may skip non-speech)
    speech: np.ndarray  # (R, 2) start and end second of each speech region (empty with the VAD off)
    domain_distance: float | None = None  # how far the audio's layer means lie from the training clips' (1: typical
    #                                       of them; None: the checkpoint keeps no domain check)
    flags: list[str] = field(default_factory=list)  # "uncertain", "out of domain": reasons not to trust the label

    @property
    def label(self) -> str:
        return next(iter(self.probabilities))

    def top(self, k: int) -> list[tuple[str, float]]:
        return list(self.probabilities.items())[:k]

    def warning(self) -> str:
        """One sentence for a user when the prediction is flagged, else ""."""
        return warning(self.flags, self.domain_distance, next(iter(self.probabilities.values())))


class Predictor:
    def __init__(self, checkpoint: str | Path, encoder: str | None = None, device: str = "auto",
                 vad: VadConfig | None = None):
        """``checkpoint``: a folder, or a Hub repository id ("user/name", fetched once, then from the local cache).
        ``vad``: where the speech is found (default: the checkpoint's settings)."""
        checkpoint = resolve_checkpoint(checkpoint)
        meta = read_checkpoint_config(checkpoint)
        name = encoder or meta["encoder"]["name"]
        if encoder is None and name.startswith(("/", ".", "~")) and not Path(name).expanduser().is_dir():
            raise SeraError(f"{checkpoint}: its encoder folder {name} is not here (moved, or another machine); "
                            "pass the same model's folder or hub id with --encoder")
        enc_cfg = EncoderConfig(name=name, whisper_padded=meta["encoder"].get("whisper_padded", False),
                                layers=meta["encoder"].get("layers", ""), device=device)
        self.encoder = Encoder(enc_cfg, known=meta["encoder"])  # its key and content fingerprint, when recorded
        self.model, self.meta, self.reference, self.attributes, self.domain = load_classifier(
            checkpoint, self.encoder.key, meta)
        if (self.encoder.num_layers, self.encoder.dim) != (meta["num_layers"], meta["dim"]):  # format 1: unchecked key
            raise SeraError(f"{checkpoint}: trained on {meta['num_layers']} layers of {meta['dim']} features, but "
                            f"encoder {name} gives {self.encoder.num_layers} of {self.encoder.dim}")
        self.model.to(self.encoder.device)
        self.labels: list[str] = self.meta["labels"]
        self.stride = int(self.meta["model"]["frame_stride"])
        known = {k: v for k, v in self.meta.get("audio", {}).items() if k in AudioConfig.__dataclass_fields__}
        self.audio_cfg = _build(AudioConfig, known, f"{checkpoint}/config.json:audio")
        saved = _build(VadConfig, self.meta.get("vad", {}), f"{checkpoint}/config.json:vad")
        self.vad = vad or saved
        self.trim = saved if saved.trim else None  # trained on clips' speech spans: every piece scored is cut so too
        self.pool_speech = saved if saved.pool_speech else None  # SAP over speech frames, found as in training
        self.calibration = _build(CalibrationConfig, self.meta.get("calibration", {}), f"{checkpoint}/config.json:calibration")
        self.temperature = float(self.meta.get("temperature", 1.0)) if self.calibration.temperature else 1.0
        self.normalise = self.meta.get("normalise", "none")  # what training did to features (config.NORMALISATIONS)
        self.speaker_normalised = self.normalise == "speaker"
        if self.speaker_normalised and self.reference is None:
            raise SeraError(f"{checkpoint}: trained on speaker-normalised features but holds no reference statistics")
        # Enrolment needs the training speakers' statistics (unnormalised checkpoints saved before sera kept them lack them)
        self.can_enrol = self.reference is not None and self.normalise != "utterance"  # a clip's own statistics rule

    @classmethod
    def from_pretrained(cls, source: str | Path, encoder: str | None = None, device: str = "auto",
                        vad: VadConfig | None = None) -> "Predictor":
        """As transformers' ``from_pretrained``: a Hub repository id or a local folder."""
        return cls(source, encoder, device, vad)

    def protocol_note(self, same_speaker: bool = False) -> str:
        """One sentence saying how a clip is scored and which cross-validated figure that matches."""
        cv = self.meta.get("cv", {})
        ua = lambda p: f"; cross-validated UA in this protocol: {100 * cv[p]['ua']['mean']:.1f}%" if p in cv else ""  # noqa: E731
        if same_speaker and self.speaker_normalised:
            return "Speaker protocol: the clips are standardised with their speaker's own statistics" + ua("speaker") + "."
        if same_speaker and self.can_enrol:
            return ("Speaker route: the clips are mapped onto the training speakers' statistics with their speaker's own "
                    "(not cross-validated for this checkpoint; it pays with about 16 or more clips of varied emotion).")
        how = {"speaker": "standardised with the training speakers' reference statistics",
               "utterance": "standardised with its own statistics"}.get(self.normalise, "no speaker statistics needed")
        return f"Clip protocol: each clip is scored alone ({how})" + ua("clip") + "."

    def windows(self, n_samples: int, sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
        return windows(n_samples, self.audio_cfg.window_seconds, sr)

    @torch.inference_mode()
    def _features(self, wave: np.ndarray) -> torch.Tensor:
        """One window -> frame-rate reduced encoder features (L, T, D), float32 on the CPU."""
        [hidden] = self.encoder([wave])
        return reduce_frames(hidden, self.stride).float().cpu()

    def enrol(self, sources: list[str | Path | np.ndarray], sr: int = SAMPLE_RATE) -> Stats:
        """A speaker's statistics from a few of their clips (files or 16 kHz waves), to pass as ``speaker=``.

        Every window of every clip counts; best with many clips of varied emotion."""
        if not self.can_enrol:
            raise SeraError("this checkpoint holds no training-speaker statistics (an unnormalised checkpoint of an "
                            "older sera): enrolment would change nothing; retrain it to enrol voices")
        if not sources:
            raise SeraError("enrol: no clips given")
        feats = []
        for i, source in enumerate(sources):
            if isinstance(source, np.ndarray):
                feats += self._encode(source, sr, f"<enrolment clip {i + 1}>")[-1]
            else:
                feats += self._encode(self._load(source), SAMPLE_RATE, str(source))[-1]
        return Stats.of(feats)

    def _encode(self, wave: np.ndarray, sr: int, name: str
                ) -> tuple[list[tuple[int, int]], list, list[Region] | None, list[torch.Tensor]]:
        """A whole recording's pieces, speech regions (shown, and pooled) and features, held together (for a
        speaker's statistics)."""
        wave, spans, speech, pooled = self._spans(wave, sr, name)
        return spans, speech, pooled, [self._features(wave[a:b]) for a, b in spans]

    def _speech_frames(self, feats: torch.Tensor, span: tuple[int, int], pooled: list[Region] | None
                       ) -> torch.Tensor | None:
        """(T,) the speech frames of one piece's features, for a checkpoint that pools speech only; the frame
        rate follows from the piece's length, as in training (``sera.features.speech_masks``)."""
        if pooled is None:
            return None
        n, sr = feats.shape[1], self.audio_cfg.sample_rate
        return speech_frames(n, n * sr / max(span[1] - span[0], 1), pooled, span[0] / sr)

    @torch.inference_mode()
    def _classify(self, feats: torch.Tensor, speaker: Stats | None, speech: torch.Tensor | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """One window's features (and its speech frames, when pooled alone) -> class probabilities (C,) under the
        checkpoint's temperature, SAP attention (T,), cluster ids (T,) and the domain distance (nan: no check)."""
        distance = self.domain.distance(feats) if self.domain is not None else float("nan")  # as the audio arrives
        stats = clip_stats(self.normalise, feats, speaker or self.reference)
        if self.normalise == "none" and speaker is not None and self.reference is not None:
            feats = self.reference.restore(speaker.apply(feats))  # an enrolled speaker mapped onto the training ones
        logits, frames, mask = classify_clip(self.model, feats, stats, speech)
        pool = self.model.pool
        attention = pool.attention(frames, mask)[0].cpu().numpy() if hasattr(pool, "attention") else np.zeros(0)
        clusters = (self.attributes.assign(frames[0]).cpu().numpy() if self.attributes is not None
                    else np.zeros(0, dtype=np.int64))
        probs = temper(logits.softmax(-1).float().cpu().numpy(), self.temperature)[0]
        return probs, attention, clusters, distance

    def _spans(self, wave: np.ndarray, sr: int, name: str
               ) -> tuple[np.ndarray, list[tuple[int, int]], list, list[Region] | None]:
        """The recording at 16 kHz, the (start, end) samples of each piece to score, its speech regions, and
        the regions pooled over (found with the checkpoint's settings; None unless it pools speech only).

        A clip that fixed windows would score whole is scored whole, leading and trailing silence
        included, exactly as the model saw its training clips (from its first to its last speech where
        the checkpoint was trained on trimmed clips)."""
        wave = prepare_audio(wave, sr, name, self.audio_cfg, self.audio_cfg.predict_max_seconds)
        sr = self.audio_cfg.sample_rate
        total = wave.size / sr
        fixed = self.windows(wave.size, sr)
        if not (self.vad.enabled or self.trim or self.pool_speech):
            return wave, fixed, [], None
        probs = speech_probabilities(wave)
        if self.vad.enabled and probs.max() < self.vad.threshold:  # not one 32 ms chunk sounds like speech
            raise AudioError(name, f"no speech found (Silero VAD: no moment reaches speech probability "
                             f"{self.vad.threshold:g}), so there is nothing to classify. To score it anyway "
                             "(screaming, laughter, crying, singing), pass --no-vad (VadConfig.enabled=False)")
        settings = self.trim or self.vad  # a trimmed model's pieces end where its training clips did
        speech = regions(probs, total, settings)
        if len(fixed) == 1 or not speech or not self.vad.enabled:  # a clip, speech too brief to cut at, or no VAD
            pieces = [_within(Region(a / sr, b / sr), speech) if self.trim else Region(a / sr, b / sr) for a, b in fixed]
        else:  # turns of speech; a trimmed model's with no context around them, as it was trained
            pieces = speech_segments(speech, replace(self.vad, context=0.0) if self.trim else self.vad,
                                     self.audio_cfg.window_seconds, total)
        pooled = regions(probs, total, self.pool_speech) if self.pool_speech else None
        return (wave, [(round(r.start * sr), round(r.end * sr)) for r in pieces], speech if self.vad.enabled else [],
                pooled)

    def predict_wave(self, wave: np.ndarray, sr: int = SAMPLE_RATE, name: str = "<audio>",
                     speaker: Stats | None = None) -> Prediction:
        """``speaker``: the speaker's normalisation statistics where known (``Stats.of`` their features).

        Each window is encoded and classified before the next is read: memory stays flat."""
        wave, spans, speech, pooled = self._spans(wave, sr, name)
        results = []
        for span in spans:  # one piece at a time: memory stays flat
            feats = self._features(wave[span[0] : span[1]])
            results.append(self._classify(feats, speaker, self._speech_frames(feats, span, pooled)))
        return self._assemble(spans, speech, results)

    def _assemble(self, spans: list[tuple[int, int]], speech: list,
                  results: list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]) -> Prediction:
        sr, rate = self.audio_cfg.sample_rate, self.encoder.frame_rate / self.stride
        probs = np.stack([r[0] for r in results])  # (W, C)
        lengths = np.array([b - a for a, b in spans], dtype=np.float64)
        mean = (probs * lengths[:, None]).sum(0) / lengths.sum()
        order = np.argsort(-mean)
        distance = None if self.domain is None else float((np.array([r[3] for r in results]) * lengths).sum() / lengths.sum())
        flagged = flags(mean, distance, self.calibration.uncertain_below, self.domain.threshold if self.domain else None)
        times = [frame_times(max(len(r[1]), len(r[2])), rate, a / sr) for (a, _), r in zip(spans, results)]
        return Prediction(
            {self.labels[i]: float(mean[i]) for i in order}, np.concatenate([r[1] for r in results]), rate,
            self.model.backbone.wap.weights.detach().cpu().numpy(), np.array(spans, dtype=np.float64) / sr, probs,
            list(self.labels), np.concatenate([r[2] for r in results]), np.concatenate(times),
            as_array(speech), distance, flagged,
        )

    def predict_file(self, path: str | Path, speaker: Stats | None = None) -> Prediction:
        return self.predict_wave(self._load(path), SAMPLE_RATE, str(path), speaker)

    def _load(self, path: str | Path) -> np.ndarray:
        return load_audio(path, self.audio_cfg, self.audio_cfg.predict_max_seconds)

    def predict_files(self, paths: list[str | Path], same_speaker: bool = False) -> list[Prediction]:
        """With ``same_speaker``, the clips' pooled statistics are used (see the module's docstring; one encoder
        pass each)."""
        if not (same_speaker and self.can_enrol):
            return [self.predict_file(p) for p in paths]  # one at a time: memory stays flat
        # the speaker's statistics need every clip's features before any clip is classified
        encoded = [self._encode(self._load(p), SAMPLE_RATE, str(p)) for p in paths]
        speaker = Stats.of([f for *_, feats in encoded for f in feats])
        return [self._assemble(spans, speech, [self._classify(f, speaker, self._speech_frames(f, span, pooled))
                                               for f, span in zip(feats, spans)])
                for spans, speech, pooled, feats in encoded]


def _within(window: Region, speech: list[Region]) -> Region:
    """The part of ``window`` from its first to its last speech (all of it if it holds none), as
    ``sera.vad.trim_to_speech`` cut the training clips."""
    inside = [r for r in speech if r.end > window.start and r.start < window.end]
    return Region(max(inside[0].start, window.start), min(inside[-1].end, window.end)) if inside else window
