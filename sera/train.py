"""Training on cached features: stage 1 (teacher-student adapter, no labels) and stage 2 (labels).

The encoder is never run here: features come from the cache (``sera.features``), already
reduced in frame rate, held in memory as float16 and batched by length so that little compute
goes to padding.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .checkpoint import load_adapter, save_adapter
from .config import SeraConfig
from .features import FeatureSet, collate, length_batches
from .inference import predict_proba
from .io import atomic_write
from .metrics import unweighted_accuracy
from .model import EmotionClassifier, LocalAttributes, TeacherStudent, span_mask
from .model.adversary import SpeakerAdversarial, reversal_scale
from .normalise import StatsDropout


def _schedule(step: int, total: int, warmup: float) -> float:
    """Linear warm-up then cosine decay, as a factor of the peak learning rate."""
    w = max(1, int(total * warmup))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


def make_accelerator():
    """Hugging Face Accelerate runs the same loop on a CPU, a GPU (CUDA when present, no flag
    needed) or several processes (``torchrun`` / ``accelerate launch``; gloo on CPUs)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    # ablations leave some heads unused, which plain DDP refuses
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])


def rank_batches(batches: list[list[int]], acc) -> list[list[int]]:
    """This process's share of an epoch's batches; every rank gets the same count (DDP needs it)."""
    n = len(batches) // acc.num_processes * acc.num_processes or len(batches)
    return batches[acc.process_index : n : acc.num_processes]


def copy_groups(fs: FeatureSet) -> list[list[int]] | None:
    """Rows of ``fs`` by clip: a clip's augmented copies keep its utterance id. None where no clip has a copy."""
    by_id: dict[str, list[int]] = {}
    for i, u in enumerate(fs.utts):
        by_id.setdefault(u.id, []).append(i)
    return list(by_id.values()) if len(by_id) < len(fs.utts) else None


def _generators(seed: int, acc) -> tuple[torch.Generator, torch.Generator]:
    """A generator shared by every rank (batch order, k-means samples) and one of this rank's own
    (crops, masks), so that ranks see different batches but agree on everything else."""
    return (torch.Generator().manual_seed(seed),
            torch.Generator().manual_seed(seed + 7919 * acc.process_index + 1))


class EpochState:
    """What a stage needs to go on after its last finished epoch: the model, the optimiser, the
    random generators and the stage's own extras. One file per rank (the ranks' own generators
    differ), written atomically at every epoch's end and removed when the stage returns; a rerun
    of a killed stage picks up there and ends with the same weights."""

    def __init__(self, path: Path | None, acc, model: torch.nn.Module, opt: torch.optim.Optimizer,
                 generators: tuple[torch.Generator, torch.Generator]):
        self.path = None if path is None else path.with_name(f"{path.stem}.rank{acc.process_index}{path.suffix}")
        self.model, self.opt, self.generators = model, opt, generators

    def load(self) -> dict | None:
        """Put the saved model, optimiser and generators back; returns the extras (None: start afresh)."""
        if self.path is None or not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, weights_only=True)  # tensors and plain containers only: no code runs
        except Exception as e:  # a convenience, never a reason to stop: the stage starts over
            warnings.warn(f"{self.path}: unreadable ({e}); the stage starts over", stacklevel=2)
            return None
        self.model.load_state_dict(state.pop("model"))
        self.opt.load_state_dict(state.pop("opt"))
        torch.set_rng_state(state.pop("rng"))
        for g, s in zip(self.generators, state.pop("generators")):
            g.set_state(s)
        return state

    def save(self, **extras) -> None:
        if self.path is not None:
            state = {**extras, "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                     "rng": torch.get_rng_state(), "generators": [g.get_state() for g in self.generators]}
            atomic_write(self.path, lambda tmp: torch.save(state, tmp))

    def done(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def uses_stage1(cfg: SeraConfig) -> bool:
    """Stage 1 runs unless switched off, left with no loss term, or given no epochs."""
    tc = cfg.train
    return tc.stage1 and (tc.distill or tc.attributes) and tc.pretrain_epochs > 0


# --- stage 1 ---------------------------------------------------------------------------------


@torch.no_grad()
def sample_frames(frames_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], fs: FeatureSet, cfg: SeraConfig,
                  generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(about ``kmeans_frames``, H) output frames of a random sample of utterances."""
    order = torch.randperm(len(fs), generator=generator).tolist()
    picked, frames = [], 0
    for i in order:
        picked.append(i)
        frames += fs.feats[i].shape[1]
        if frames >= cfg.train.kmeans_frames:
            break
    collected = []
    for b in length_batches(fs.lengths[picked], cfg.train.batch_size):
        feats, mask, *_ = collate(fs, [picked[j] for j in b])
        out = frames_of(feats.to(device), mask.to(device))
        collected.append(out[mask.to(device)].cpu())
    return torch.cat(collected)[: cfg.train.kmeans_frames]


def refit_attributes(model: TeacherStudent, attrs: LocalAttributes, fs: FeatureSet, cfg: SeraConfig,
                     generator: torch.Generator, device: torch.device) -> None:
    """k-means on the teacher's frames."""
    attrs.fit(sample_frames(lambda f, m: model.teacher_frames(f, m)[1], fs, cfg, generator, device), generator)


def final_attributes(model: EmotionClassifier, fs: FeatureSet, cfg: SeraConfig,
                     stage1: LocalAttributes | None = None) -> LocalAttributes:
    """Local attributes of a fine-tuned model's frames, kept in its checkpoint for the pictures (the
    cluster timeline). Started from stage 1's centroids, so a cluster keeps its stage 1 meaning."""
    attrs = LocalAttributes(cfg.model.num_attributes)
    if stage1 is not None and stage1.centroids is not None:
        attrs.centroids = stage1.centroids.clone()
    device = next(model.parameters()).device
    model.eval()
    frames = sample_frames(lambda f, m: model(f, m)[1], fs, cfg, torch.Generator().manual_seed(cfg.seed), device)
    attrs.fit(frames, torch.Generator().manual_seed(cfg.seed))
    return attrs


def pretrain(
    fs: FeatureSet, cfg: SeraConfig, num_layers: int, dim: int, progress: bool = True,
    log: Callable[[dict], None] | None = None, resume: Path | None = None,
) -> tuple[TeacherStudent, LocalAttributes, list[dict]]:
    """Stage 1: the student learns from the EMA teacher on unlabelled frames. Returns model, clusters, history.

    With ``resume`` (a file) the state at every epoch's end is kept there, and a rerun goes on from it."""
    tc, mc = cfg.train, cfg.model
    acc = make_accelerator()
    device = acc.device
    torch.manual_seed(cfg.seed)
    shared, local = _generators(cfg.seed, acc)
    model = TeacherStudent(mc, num_layers, dim).to(device)
    attrs = LocalAttributes(mc.num_attributes)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    history = []
    saved = EpochState(resume, acc, model, opt, (shared, local))
    if (state := saved.load()) is not None:
        attrs.centroids, attrs.refits, attrs.changed = state["centroids"], state["refits"], state["changed"]
        history = state["history"]
    wrapped, opt = acc.prepare(model, opt)
    n_batches = len(rank_batches(length_batches(fs.lengths, tc.batch_size), acc))
    # A budget of steps whatever the audio's size (the last epoch cut short), or of epochs over it
    epochs = math.ceil(tc.pretrain_steps / n_batches) if tc.pretrain_steps else tc.pretrain_epochs
    total = max(1, tc.pretrain_steps or epochs * n_batches)
    start = len(history)  # epochs done (a resumed stage)
    step = start * n_batches
    bar = tqdm(total=total, initial=step, desc="stage 1", unit="step",
               disable=not (progress and acc.is_main_process), dynamic_ncols=True, mininterval=1.0)
    for epoch in range(start, epochs):
        sums = torch.zeros(2, device=device)  # distill, attributes
        steps = min(n_batches, total - step)  # this epoch's
        for idx in rank_batches(length_batches(fs.lengths, tc.batch_size, shared), acc)[:steps]:
            if tc.attributes and step % tc.refresh_every == 0:
                refit_attributes(model, attrs, fs, cfg, shared, device)
            feats, mask, *_ = collate(fs, idx, mc.max_frames, local)
            feats, mask = feats.to(device), mask.to(device)
            time_mask = span_mask(mask.cpu(), mc.mask_prob, mc.mask_span, local).to(device)
            targets, tframes = model.teacher_frames(feats, mask)
            ids = attrs.assign(tframes) if tc.attributes else None
            model.student.train()
            losses = wrapped(feats, mask, time_mask, targets if tc.distill else None, ids)
            loss = tc.distill_weight * losses.get("distill", 0.0) + tc.attribute_weight * losses.get("attributes", 0.0)
            for g in opt.param_groups:
                g["lr"] = tc.lr * _schedule(step, total, tc.warmup)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(params, 1.0)
            opt.step()
            model.ema_update(tc.ema_start + (tc.ema_end - tc.ema_start) * step / max(1, total - 1))
            sums += torch.stack([losses.get(k, torch.zeros((), device=device)).detach() for k in ("distill", "attributes")])
            step += 1
            bar.update(1)
        sums = acc.reduce(sums, "mean") / steps  # mean over this epoch's steps and the ranks
        record = {"epoch": epoch + 1, **{k: float(v) for k, v, on in zip(("distill", "attributes"), sums,
                                                                          (tc.distill, tc.attributes)) if on},
                  "kmeans_refits": attrs.refits}
        if attrs.changed:  # how much the last refit moved the targets as the teacher moves
            record["attributes_changed"] = attrs.changed[-1]
        history.append(record)
        bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in record.items() if k not in ("epoch", "kmeans_refits")))
        saved.save(centroids=attrs.centroids, refits=attrs.refits, changed=attrs.changed, history=history)
        if log:
            log({"stage": 1, **record})
    bar.close()
    saved.done()
    return model, attrs, history


def stage1(fs: FeatureSet, cfg: SeraConfig, progress: bool = True, saved: Path | None = None,
           unlabelled: FeatureSet | None = None, log: Callable[[dict], None] | None = None,
           ) -> tuple[TeacherStudent, LocalAttributes]:
    """Stage 1 on ``fs`` (plus ``unlabelled`` audio of other corpora), or its saved result when
    ``saved`` holds one (an interrupted run resumes there)."""
    if saved is not None and (saved / "config.json").is_file():
        init, attrs, _ = load_adapter(saved, fs.key)
        return init, attrs
    fs = fs + unlabelled if unlabelled is not None else fs
    L, _, D = fs.feats[0].shape
    resume = saved.with_name(f"{saved.name}-progress.pt") if saved is not None else None
    init, attrs, _ = pretrain(fs, cfg, L, D, progress=progress, log=log, resume=resume)
    if saved is not None:
        save_adapter(saved, init, attrs, cfg, fs.key, L, D)
    return init, attrs


# --- stage 2 ---------------------------------------------------------------------------------


def balance_weights(fs: FeatureSet, by: str) -> torch.Tensor:
    """(N,) weights under which each corpus (``by`` "corpus") or each speaker ("speaker") weighs the same in a
    loss, mean 1: RAVDESS's 1,440 clips and EmoDB's 535 then count alike, and so do a talkative and a terse actor."""
    groups = [u.corpus for u in fs.utts] if by == "corpus" else fs.speakers
    counts = Counter(groups)
    w = torch.tensor([1.0 / counts[g] for g in groups])
    return w * len(w) / w.sum()


def finetune(
    train: FeatureSet, val: FeatureSet | None, cfg: SeraConfig, num_layers: int, dim: int, num_classes: int,
    init: TeacherStudent | None = None, attrs: LocalAttributes | None = None, epochs: int | None = None,
    progress: bool = True, log: Callable[[dict], None] | None = None, resume: Path | None = None,
) -> tuple[EmotionClassifier, list[dict]]:
    """Stage 2: backbone (from stage 1 when given) + SAP + classifier, early-stopped on ``val`` UA.

    Without ``val`` it trains a fixed number of ``epochs`` (the final model on all speakers).
    ``resume``: as in ``pretrain``.
    """
    tc, mc = cfg.train, cfg.model
    acc = make_accelerator()
    device = acc.device
    torch.manual_seed(cfg.seed + 1)
    shared, local = _generators(cfg.seed + 1, acc)
    model = EmotionClassifier(mc, num_layers, dim, num_classes).to(device)
    if init is not None:
        model.backbone.load_state_dict(getattr(init, tc.finetune_from).state_dict())
    use_attr = attrs is not None and attrs.centroids is not None and tc.finetune_attribute_weight > 0
    if use_attr:
        model.attribute_head.load_state_dict(init.attribute_head.state_dict())
    prior = None  # (N, C) with a residual probe: each clip's log-probabilities from a probe without its speaker
    if model.prior is not None:
        prior = model.prior.fit_prior(train.feats, train.labels.numpy(), train.speakers, cfg.seed).to(device)
    share = balance_weights(train, tc.balance).to(device) if tc.balance else None  # (N,) each clip's share of the loss
    weight = None
    if tc.class_weighting:
        counts = torch.bincount(train.labels, minlength=num_classes).float()
        weight = (counts.sum() / counts.clamp_min(1) / num_classes).to(device)
    net: torch.nn.Module = model  # what trains: the classifier, or it with a speaker adversary
    speakers = None  # (N,) each clip's training speaker, for the adversary
    if tc.speaker_adversary > 0:
        names = train.speakers
        index = {n: i for i, n in enumerate(sorted(set(names)))}
        speakers = torch.tensor([index[n] for n in names], device=device)
        net = SpeakerAdversarial(model, len(index)).to(device)
    backbone_lr = tc.finetune_backbone_lr if init is not None else 1.0  # gentler on what stage 1 learned
    backbone = list(model.backbone.parameters())
    rest = [p for p in net.parameters() if all(p is not b for b in backbone)]  # the heads (and the adversary's)
    opt = torch.optim.AdamW([{"params": backbone, "scale": backbone_lr}, {"params": rest, "scale": 1.0}],
                            lr=tc.lr, weight_decay=tc.weight_decay)
    best = (-1.0, 0, None)  # (val UA, epoch, state)
    history = []
    # An exponential moving average of the weights is what validation scores and what is kept, when asked for
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(tc.finetune_ema), use_buffers=True) \
        if tc.finetune_ema > 0 else None
    saved = EpochState(resume, acc, net, opt, (shared, local))
    if (state := saved.load()) is not None:
        best, history = tuple(state["best"]), state["history"]
        if ema is not None:
            ema.load_state_dict(state["ema"])
    wrapped, opt = acc.prepare(net, opt)
    epochs = epochs or tc.finetune_epochs
    groups = copy_groups(train) if tc.finetune_copies == "swap" else None  # (N clips) rows of each clip and its copies
    lengths = train.lengths if groups is None else train.lengths[[g[0] for g in groups]]  # what an epoch reads
    n_batches = len(rank_batches(length_batches(lengths, tc.batch_size), acc))
    total = max(1, epochs * n_batches)
    start = len(history)  # epochs done (a resumed stage)
    step = start * n_batches
    mixing = torch.distributions.Beta(tc.mixup, tc.mixup) if tc.mixup > 0 else None
    restandardise = StatsDropout(train, tc.stats_dropout) if tc.stats_dropout > 0 else None

    def ce(logits: torch.Tensor, target: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy over a batch; ``w`` (B,): each clip's share of it (``train.balance``)."""
        if w is None:
            return F.cross_entropy(logits, target, weight=weight, label_smoothing=tc.label_smoothing)
        per_clip = F.cross_entropy(logits, target, weight=weight, label_smoothing=tc.label_smoothing, reduction="none")
        return (per_clip * w).sum() / w.sum()

    def blended(loss_of: Callable, target: torch.Tensor, w: torch.Tensor | None, lam: float,
                other: torch.Tensor | None) -> torch.Tensor:
        """``loss_of(target, w)`` over a batch; with mixup (``other``: each clip's partner) the two clips'
        targets' losses in the blend's shares."""
        if other is None:
            return loss_of(target, w)
        return lam * loss_of(target, w) + (1 - lam) * loss_of(target[other], None if w is None else w[other])

    bar = tqdm(total=epochs, initial=start, desc="stage 2", unit="epoch",
               disable=not (progress and acc.is_main_process), dynamic_ncols=True)
    for epoch in range(start, epochs):
        if val is not None and epoch - best[1] >= tc.patience:  # early stopping
            break
        net.train()
        total_loss, speaker_sum = torch.zeros((), device=device), torch.zeros((), device=device)
        for idx in rank_batches(length_batches(lengths, tc.batch_size, shared), acc):
            if groups is not None:  # each clip as itself or as one of its copies
                idx = [g[int(torch.randint(len(g), (1,), generator=local))] if len(g) > 1 else g[0]
                       for g in (groups[i] for i in idx)]
            feats, mask, y, speech = collate(train, idx, mc.max_frames, local)
            if restandardise is not None:  # each clip with a speaker's statistics of any size, or none
                feats = restandardise(feats, mask, idx, local)
            feats, mask, y = feats.to(device), mask.to(device), y.to(device)
            speech = None if speech is None else speech.to(device)
            rows = torch.as_tensor(idx, device=device)  # (B,) the batch's clips
            w = share[rows] if share is not None else None  # (B,) clips' shares
            prior_b = prior[rows] if prior is not None else None  # (B, C)
            lam, other = 1.0, None
            if mixing is not None:  # mixup: each clip blended with another of the batch (similar lengths), and so
                lam = float(mixing.sample())  # are their targets; padding is the union of both clips' frames
                other = torch.randperm(len(idx), generator=local).to(device)
                feats = lam * feats + (1 - lam) * feats[other]
                mask = mask | mask[other]
                speech = None if speech is None else speech | speech[other]
                prior_b = None if prior_b is None else lam * prior_b + (1 - lam) * prior_b[other]
            time_mask = span_mask(mask.cpu(), tc.finetune_mask_prob, mc.mask_span, local).to(device)
            masked = time_mask if tc.finetune_mask_prob > 0 else None
            if speakers is None:
                logits, frames = wrapped(feats, mask, masked, speech, prior=prior_b)
            else:
                logits, frames, by_speaker = wrapped(feats, mask, masked, speech,
                                                     reversal_scale(step / total, tc.speaker_adversary), prior=prior_b)
            loss = blended(lambda t, s: ce(logits, t, s), y, w, lam, other)
            if speakers is not None:  # the speaker head learns the speakers; the backbone, reversed, hides them
                speaker_loss = blended(lambda t, _: F.cross_entropy(by_speaker, t), speakers[rows], None, lam, other)
                loss = loss + speaker_loss
                speaker_sum += speaker_loss.detach()
            if use_attr:
                sel = time_mask & mask
                ids = attrs.assign(frames.detach()[sel])
                loss = loss + tc.finetune_attribute_weight * F.cross_entropy(model.attribute_head(frames[sel]), ids)
            for g in opt.param_groups:
                g["lr"] = tc.lr * g["scale"] * _schedule(step, total, tc.warmup)
            opt.zero_grad(set_to_none=True)
            acc.backward(loss)
            acc.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            total_loss += loss.detach()
            step += 1
        record = {"epoch": epoch + 1, "loss": float(acc.reduce(total_loss, "mean")) / n_batches}
        if speakers is not None:  # about log(speakers) while the voices stay hidden from the speaker head
            record["speaker_loss"] = float(acc.reduce(speaker_sum, "mean")) / n_batches
        kept = model if ema is None else ema.module  # the weights validation scores and training keeps
        if val is not None and len(val):  # every rank scores the same model on all of val: same decision
            pred = predict_proba(kept, val).argmax(1).numpy()
            record["val_ua"] = unweighted_accuracy(val.labels.numpy(), pred, num_classes)
            if record["val_ua"] > best[0]:
                best = (record["val_ua"], epoch + 1, {k: v.detach().clone() for k, v in kept.state_dict().items()})
        history.append(record)
        bar.update(1)
        bar.set_postfix_str(" ".join(f"{k} {v:.3f}" for k, v in record.items() if k != "epoch"))
        saved.save(best=list(best), history=history, **({"ema": ema.state_dict()} if ema is not None else {}))
        if log:
            log({"stage": 2, **record})
    bar.close()
    saved.done()
    if best[2] is not None:
        model.load_state_dict(best[2])
    elif ema is not None:  # no validation (the final model): the average at the end
        model.load_state_dict(ema.module.state_dict())
    model.eval()
    return model, history
