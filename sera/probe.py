"""The linear probe: frozen features, mean over time, logistic regression (the SUPERB / S3PRL
style baseline). It tells how much a representation already holds before anything is trained
on frames, and is what the adapter has to beat.
"""

from __future__ import annotations

import numpy as np
import torch

from .data import Fold
from .metrics import metrics, unweighted_accuracy
from .features import FeatureSet
from .model.probe import layer_means, logistic_probe


def utterance_embeddings(fs: FeatureSet) -> np.ndarray:
    """(N, L, D): each layer's frames averaged over time (what sera's own probe reads)."""
    return layer_means(fs.feats)


def probe_predictions(X: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0) -> np.ndarray:
    """Class ids predicted for ``test`` by a standardised logistic regression fitted on ``train``."""
    return logistic_probe(seed).fit(X[train], y[train]).predict(X[test])


def probe_cv(X: np.ndarray, fs: FeatureSet, folds: list[Fold], num_classes: int, seed: int = 0) -> dict:
    """UA / WA / macro-F1 of the probe over ``folds`` (pooled predictions), and UA per fold.

    ``X`` is (N, F): one row per utterance of ``fs``, e.g. ``utterance_embeddings(fs)[:, layer]``
    or all layers flattened."""
    y = fs.labels.numpy()
    pred = np.full(len(y), -1)
    per_fold = []
    for fold in folds:
        test = np.array([u.id in fold.test_ids for u in fs.utts])
        pred[test] = probe_predictions(X, y, ~test, test, seed)
        per_fold.append(metrics(y[test], pred[test], num_classes)["ua"])
    scored = pred >= 0
    return {**metrics(y[scored], pred[scored], num_classes), "per_fold_ua": per_fold}


def as_matrix(embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
    """(N, L, D) -> (N, L * D): all layers side by side."""
    return np.asarray(embeddings).reshape(len(embeddings), -1)


def emobox_lr(epoch: int, epochs: int, lr: float = 1e-4, warmup: int = 10) -> float:
    """The learning rate EmoBox's recipe trains epoch ``epoch`` (1-based) at. Its SpeechBrain
    ``LinearWarmupScheduler(lr, 10, epochs)`` is stepped after each validation, so the first epoch runs
    at Adam's initial lr and epoch e > 1 at the scheduler's value for step e - 2: 0 for the second,
    then a linear rise to lr over 10 epochs and a linear fall to 0 at the last."""
    if epoch == 1:
        return lr
    step = epoch - 2
    if step < warmup:
        return lr * step / max(1, warmup)
    return lr * max(0.0, (epochs - step) / max(1, epochs - warmup))


def emobox_predictions(fs: FeatureSet, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int = 0,
                       layer: int = -1, epochs: int = 100, hidden: int = 128, output_norm: bool = True) -> np.ndarray:
    """EmoBox's downstream recipe (emo-box/EmoBox ``examples/sb``: the README's command, the hparams'
    scheduler, ``classifier_head.SuperbBaseModel``), the recipe of its published figures, as a baseline:

    - features: the last hidden layer, each clip's (T, D) frames layer-normalised as one block without
      affine (``--output_norm``: ``F.layer_norm(out, (T, D))`` at extraction);
    - Linear(D, 128) -> ReLU -> mean over the clip's real frames -> Linear(128, C), log-softmax + NLL;
    - Adam at 1e-4 under its warm-up schedule (``emobox_lr``), batch 32, 100 epochs;
    - validation: a random 20% of the training clips (its ``split_ratio [0.8, 0.2]``; EmoBox's RAVDESS
      folds have no validation list), the epoch kept by balanced accuracy there (its ``max_key="wa"``,
      which its scoring names balanced accuracy). EmoBox's own ``evaluate`` scores every epoch's
      checkpoint on the test fold; here the test fold is scored once, with the validation's choice.

    Each test clip is scored on its own frames (clip protocol). What still differs: sera's cache holds
    frames averaged over ``model.frame_stride`` (12.5 per s, EmoBox 50), and Whisper runs on the clip's
    real length where EmoBox pads to 30 s (``encoder.whisper_padded`` gives EmoBox's way)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    idx = np.flatnonzero(train)
    idx = idx[torch.randperm(len(idx), generator=g).numpy()]
    n_val = max(1, len(idx) // 5)
    val, fit = idx[:n_val], idx[n_val:]
    D, C = fs.feats[0].shape[-1], int(y.max()) + 1
    frames = [f[layer].float() for f in fs.feats]  # each (T_i, D)
    if output_norm:
        frames = [torch.nn.functional.layer_norm(f, f.shape) for f in frames]
    lengths = torch.tensor([len(f) for f in frames])
    x_all = torch.nn.utils.rnn.pad_sequence(frames, batch_first=True)  # (N, T_max, D), zero-padded
    pre, post = torch.nn.Linear(D, hidden), torch.nn.Linear(hidden, C)
    params = [*pre.parameters(), *post.parameters()]
    opt = torch.optim.Adam(params, lr=1e-4)
    labels = torch.as_tensor(y)

    def logits(rows: np.ndarray) -> torch.Tensor:
        T = int(lengths[rows].max())
        x = x_all[rows, :T]  # (B, T, D)
        mask = (torch.arange(T)[None, :] < lengths[rows][:, None]).float()[..., None]  # (B, T, 1)
        h = (torch.relu(pre(x)) * mask).sum(1) / mask.sum(1)  # (B, hidden): mean over real frames
        return post(h)

    @torch.no_grad()
    def predict(rows: np.ndarray) -> np.ndarray:
        if not len(rows):
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([logits(rows[i : i + 32]).argmax(1).numpy() for i in range(0, len(rows), 32)])

    best, best_state = -1.0, None
    for epoch in range(1, epochs + 1):
        for group in opt.param_groups:
            group["lr"] = emobox_lr(epoch, epochs)
        order = fit[torch.randperm(len(fit), generator=g).numpy()]
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            loss = torch.nn.functional.nll_loss(logits(batch).log_softmax(-1), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        score = unweighted_accuracy(y[val], predict(val), C)
        if score > best:
            best, best_state = score, [{k: v.clone() for k, v in m.state_dict().items()} for m in (pre, post)]
    for m, state in zip((pre, post), best_state):
        m.load_state_dict(state)
    return predict(np.flatnonzero(test))
