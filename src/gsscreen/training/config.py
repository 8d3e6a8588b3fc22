"""The study's configuration: one typed :class:`StudyConfig` (saved as ``config.json`` in every run folder).

Defaults follow Hong et al. 2021 where the paper states a choice (five-fold CV with train:val:test = 3:1:1,
balanced subsets, softmax + triplet loss, RMSProp, augmentation by rotation / cropping / horizontal flip, 50%
dropout, threshold chosen on validation). Where the paper is silent the default is marked "(ours)".

Three presets (:func:`preset`):

- ``default``: FaceNet with its body frozen and its features cached (computed once per photo for the original crop
  and a few augmented views, reused by all folds); only the head trains. CPU friendly (≤ 45 min for ~3,600 photos
  on 2 cores).
- ``paper``: VGG-16 from VGG-Face, head first, then the whole network fine-tuned, augmentation on the fly. Needs
  imported VGG-Face weights and a GPU to finish in reasonable time.
- ``quick``: the ``tiny`` random-init backbone, few epochs: for the demo and tests (seconds).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsscreen.config import from_dict, read_config_file, to_dict

SELECT_METRICS = ("auc", "loss")
# Plus the parametrised forms "sensitivity@X", "specificity@X" and "fixed_X" (see choose_threshold).
THRESHOLD_METHODS = ("youden", "f1", "accuracy", "fixed_0.5", "specificity@0.98", "sensitivity@0.95")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class AugmentConfig:
    """Random augmentation, applied as batched tensor ops on ``(B, 3, H, W)`` 0–1 images (CPU or GPU).

    Attributes:
        enabled: False turns augmentation off (every training view is the plain crop).
        rotation_deg: rotation angle drawn uniformly from ``[-rotation_deg, +rotation_deg]`` degrees (paper: random
            rotation; ±15° ours).
        crop_scale: the random crop covers a share of the image area drawn uniformly from this range, then is
            resized back to the full size (paper: random cropping; 0.8–1.0 ours).
        hflip_p: probability of a horizontal flip (paper: horizontal flip).
        color_jitter: strength ``s`` of brightness / contrast / saturation jitter, each factor drawn from
            ``[1 - s, 1 + s]``; 0 = off (ours; the paper does not jitter colour).
        padding: what fills the corners a rotation uncovers: ``reflection``, ``border`` or ``zeros``.
        frame_p: probability that a view gets flat-grey bands along its edges (ours): alignment fills the part of
            the template outside the photo with grey, and how much there is depends on how tightly the photo's
            source cropped it, a source signature; random bands on both classes teach the model to ignore it.
            0 = off.
        frame_max: largest band width, fraction of the side, drawn uniformly per side from ``[0, frame_max]``.
    """

    enabled: bool = True
    rotation_deg: float = 15.0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    hflip_p: float = 0.5
    color_jitter: float = 0.0
    padding: str = "reflection"
    frame_p: float = 0.0
    frame_max: float = 0.3


@dataclass
class OptimConfig:
    """RMSProp (the paper's optimiser); see ``torch.optim.RMSprop``.

    Attributes:
        lr: learning rate of the head (and of trainable body stages before ``FineTuneConfig.body_lr_factor``).
        alpha: smoothing constant of the squared-gradient average.
        momentum: momentum factor.
        eps: added to the denominator for stability.
        weight_decay: L2 penalty.
    """

    lr: float = 1e-3
    alpha: float = 0.9
    momentum: float = 0.0
    eps: float = 1e-7
    weight_decay: float = 1e-4


@dataclass
class FineTuneConfig:
    """Staged fine-tuning.

    Stage 1 trains the head only for ``head_epochs`` epochs; stage 2 then also trains the last
    ``unfreeze_stages`` stages of ``GSNet.body`` with learning rate ``lr * body_lr_factor``. With
    ``unfreeze_stages = 0`` the body stays frozen throughout (and its output can be cached); a negative value
    unfreezes every body stage (full fine-tuning).

    Attributes:
        head_epochs: epochs of stage 1 (head only).
        unfreeze_stages: body stages trained in stage 2 (0 = none, -1 = all).
        body_lr_factor: learning-rate multiplier of the body stages in stage 2.
        update_batchnorm: let the BatchNorm layers of trained *pretrained* body stages re-estimate their
            statistics from training batches. False (default) keeps the imported statistics: VGG-Face's BNs are
            exact identities carrying the original conv biases, and batch statistics of a small cohort would turn
            the network into something else at the first step. A random-init body always learns its own.
    """

    head_epochs: int = 5
    unfreeze_stages: int = 0
    body_lr_factor: float = 0.1
    update_batchnorm: bool = False


@dataclass
class TrainConfig:
    """The per-fold training loop.

    Attributes:
        epochs: maximum epochs per fold (stage 1 + stage 2).
        batch_size: photos per batch.
        optim: RMSProp settings.
        finetune: staged fine-tuning.
        dropout: dropout probability in the head (paper: 0.5).
        triplet_weight: λ in ``loss = CE + λ · triplet`` (paper: softmax + triplet loss; 0 turns the triplet off).
        triplet_margin: margin of the batch-hard triplet loss on the L2-normalised embedding.
        select_metric: validation metric that picks the best epoch: ``auc`` (higher is better; ties go to the lower
            validation loss) or ``loss`` (validation cross-entropy, lower is better).
        patience: stop a fold after this many epochs without a better validation metric (0 = never stop early).
        cache_features: run the frozen part of the body once per photo and cache its output (for the original crop
            and ``n_views`` augmented views) instead of running it every epoch. Only used when some body stages are
            frozen throughout (``finetune.unfreeze_stages >= 0``).
        n_views: augmented views cached per photo (training samples one of the original + ``n_views`` each epoch).
        tta_flip: evaluation averages P(GS) of the crop and its horizontal mirror.
    """

    epochs: int = 30
    batch_size: int = 32
    optim: OptimConfig = field(default_factory=OptimConfig)
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)
    dropout: float = 0.5
    triplet_weight: float = 1.0
    triplet_margin: float = 0.3
    select_metric: str = "auc"
    patience: int = 8
    cache_features: bool = True
    n_views: int = 4
    tta_flip: bool = True


@dataclass
class GroupingConfig:
    """Which photos the splits keep together beyond subject ids, identical bytes and near-duplicate chains.

    Attributes:
        likely_same_child: when some photos have no ``subject_id``, cluster all photos by FaceNet cosine similarity
            (``gsscreen.identity``) and keep each cluster in one subset. Needs the pretrained FaceNet weights (the
            study warns and goes on without it when they are missing).
        threshold: cosine similarity at or above which two photos are linked (calibrated in
            ``benchmarks/bench_identity.py``).
        audit: count test photos with a close FaceNet neighbour in their fold's training subsets (the report's
            leakage audit), with or without grouping.
    """

    likely_same_child: bool = True
    threshold: float = 0.80
    audit: bool = True


@dataclass
class StudyConfig:
    """One cross-validated study: alignment, splits, training per fold, thresholds, metrics, baseline.

    Attributes:
        backbone: registered backbone name (``gsscreen weights list``); ``facenet`` by default, ``vgg16`` in the
            paper, ``tiny`` for tests.
        pretrained: load the backbone's offline pretrained weights. When they are missing the study stops with
            an error, unless ``allow_random_init``; ``metrics.json`` records whether they loaded
            (``pretrained_loaded``).
        allow_random_init: go on from random init when ``pretrained`` weights are missing (a warning on the
            console, ``pretrained = false`` in ``config.json``, and the report's header says so).
        folds: number of cross-validation folds; each fold tests one subset, validates on the next, trains on the
            rest (5 → train:val:test = 3:1:1 as in the paper).
        seed: seeds the split, augmentation, sampling, dropout and initialisation; same seed → same results.
        image_size: model input side in pixels; ``None`` = the backbone's ``spec.input_size``.
        align: run MTCNN alignment (``gsscreen.faces.align_cohort``) first; False = the photos already are aligned
            face crops (they are only resized).
        train: the training loop.
        augment: the augmentation.
        threshold_method: how each fold's decision threshold is chosen on its validation subset (never on test):
            ``youden`` (max sensitivity + specificity − 1; paper-style), ``f1``, ``accuracy``,
            ``specificity@X`` (the most sensitive threshold with validation specificity ≥ X: fewer referrals),
            ``sensitivity@X``, or ``fixed_X``.
        device: ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``.
        mixed_precision: bfloat16 autocast on CUDA (ignored on CPU, where training stays float32 and deterministic).
        channels_last: channels-last memory format on CUDA (ignored on CPU).
        threads: CPU threads for torch (0 = torch's default).
        external_controls: folders or cohort CSVs whose photos are all controls from another source (e.g. UTKFace
            children); every fold's model reports the share it calls GS (= its false-positive rate there).
        baseline: also fit a logistic regression on frozen backbone embeddings with the same splits and threshold
            rule, reported beside the model.
        n_bootstrap: bootstrap iterations for the pooled ROC band and AUC CI (paper-style: 200).
        grouping: likely-same-child grouping of the splits and the leakage audit.
    """

    backbone: str = "facenet"
    pretrained: bool = True
    allow_random_init: bool = False
    folds: int = 5
    seed: int = 0
    image_size: int | None = None
    align: bool = True
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    threshold_method: str = "youden"
    device: str = "auto"
    mixed_precision: bool = True
    channels_last: bool = True
    threads: int = 0
    external_controls: list[str] = field(default_factory=list)
    baseline: bool = True
    n_bootstrap: int = 200
    grouping: GroupingConfig = field(default_factory=GroupingConfig)

    def validate(self) -> StudyConfig:
        """Raise ``ValueError`` naming the field when a value is out of range; returns ``self``."""
        problems = []
        if self.folds < 3:
            problems.append(f"folds={self.folds}: need at least 3 (train, validation and test subsets)")
        if self.train.epochs < 1:
            problems.append(f"train.epochs={self.train.epochs}: must be >= 1")
        if self.train.batch_size < 2:
            problems.append(f"train.batch_size={self.train.batch_size}: must be >= 2 (batch norm, triplets)")
        if self.train.select_metric not in SELECT_METRICS:
            problems.append(f"train.select_metric={self.train.select_metric!r}: choose from {SELECT_METRICS}")
        if not valid_threshold_method(self.threshold_method):
            problems.append(f"threshold_method={self.threshold_method!r}: choose youden, f1, accuracy, "
                            "sensitivity@X, specificity@X or fixed_X (X in [0, 1])")
        if self.device not in DEVICES:
            problems.append(f"device={self.device!r}: choose from {DEVICES}")
        if self.train.n_views < 0:
            problems.append(f"train.n_views={self.train.n_views}: must be >= 0")
        lo, hi = self.augment.crop_scale
        if not 0 < lo <= hi <= 1:
            problems.append(f"augment.crop_scale={self.augment.crop_scale}: need 0 < low <= high <= 1")
        if self.augment.padding not in ("reflection", "border", "zeros"):
            problems.append(f"augment.padding={self.augment.padding!r}: choose reflection, border or zeros")
        if not 0 <= self.augment.frame_p <= 1:
            problems.append(f"augment.frame_p={self.augment.frame_p}: a probability, 0 to 1")
        if not 0 <= self.augment.frame_max < 0.5:
            problems.append(f"augment.frame_max={self.augment.frame_max}: need 0 <= frame_max < 0.5")
        if not 0 < self.grouping.threshold <= 1:
            problems.append(f"grouping.threshold={self.grouping.threshold}: a cosine similarity in (0, 1]")
        if self.train.triplet_weight < 0:
            problems.append("train.triplet_weight must be >= 0")
        if problems:
            raise ValueError("invalid study config: " + "; ".join(problems))
        return self


def valid_threshold_method(method: str) -> bool:
    """True when :func:`gsscreen.evaluation.metrics.choose_threshold` accepts ``method``."""
    import re

    m = method.strip().lower()
    hit = re.fullmatch(r"(sensitivity@|specificity@|fixed[_:@=])([0-9]*\.?[0-9]+)", m)
    return m in ("youden", "f1", "accuracy") or (hit is not None and 0.0 <= float(hit.group(2)) <= 1.0)


PRESETS = ("default", "quick", "paper")


def preset(name: str) -> StudyConfig:
    """The named preset (see the module docstring): ``default``, ``quick`` or ``paper``."""
    if name == "default":
        # Colour jitter (ours): web-collected sets differ between classes in brightness and colour cast (the
        # photo's source, not the face); jittering the cached views makes the head lean less on it. On ds-kaggle
        # it lowered the false-positive rate on utk-kids from 10.1 ± 4.1% to 8.0 ± 0.9% at the same CV AUC.
        return StudyConfig(augment=AugmentConfig(color_jitter=0.4))
    if name == "quick":
        return StudyConfig(
            backbone="tiny",
            pretrained=False,
            align=False,
            train=TrainConfig(
                epochs=3,
                batch_size=16,
                optim=OptimConfig(lr=3e-3),
                finetune=FineTuneConfig(head_epochs=1, unfreeze_stages=1, body_lr_factor=0.3),
                patience=0,
                n_views=2,
            ),
            n_bootstrap=50,
            grouping=GroupingConfig(likely_same_child=False, audit=False),  # synthetic faces; keep tests fast
            threads=1,  # tiny tensors: one thread beats two (no OpenMP hand-off, no spinning on busy machines)
        )
    if name == "paper":
        return StudyConfig(
            backbone="vgg16",
            train=TrainConfig(
                epochs=40,
                batch_size=32,
                optim=OptimConfig(lr=1e-4),
                finetune=FineTuneConfig(head_epochs=3, unfreeze_stages=-1, body_lr_factor=0.1),
                cache_features=False,
                patience=10,
            ),
        )
    raise KeyError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def build_config(
    preset_name: str = "default", path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> StudyConfig:
    """Preset, then a TOML/JSON file (nested tables update nested configs), then ``overrides`` (None = keep).

    Unknown keys anywhere are an error naming the key.
    """
    data = to_dict(preset(preset_name))
    if path is not None:
        data = _deep_update(data, read_config_file(path, what="study config"))
    data = _deep_update(data, {k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(StudyConfig, data).validate()


def config_hash(cfg: StudyConfig) -> str:
    """A short, stable hash of everything in ``cfg`` (a run folder belongs to exactly one config)."""
    blob = json.dumps(to_dict(cfg), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def config_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts (for a clear resume-refusal message)."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, key + ".")
        elif va != vb:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out


def replace(cfg: StudyConfig, **changes: Any) -> StudyConfig:
    """``dataclasses.replace`` for the top level (convenience for tests and the CLI)."""
    return dataclasses.replace(cfg, **changes)
