"""Which class-activation map a model is explained with, and that map for an ensemble in one forward pass.

A :class:`CamSpec` names a method and one or more layers:

- ``"gradcam"`` (Selvaraju et al. 2017): channel weights = the class logit's gradient averaged over space;
  map = ReLU(sum_k w_k A_k). At a late, coarse layer it is what the paper used (VGG-16 conv5_3, 14×14).
- ``"hirescam"`` (Draelos & Carin 2020): every *location* weighs its activations by its own gradient,
  map = ReLU(sum_k dY/dA_k(i, j) A_k(i, j)); summed over locations it is the first-order contribution of the
  layer to the logit, so it keeps Grad-CAM's faithfulness without averaging the gradient over space (which at
  an earlier layer lets evidence here cancel against evidence there).
- ``"layercam"`` (Jiang et al. 2021): as HiResCAM with only the positive gradients. On a frozen pretrained body
  it mostly shows where the body's activations are large, whatever the head learned: with the demo model's
  trained head replaced by a random one its maps kept a rank correlation of ~0.9 (the randomisation check fails).
- several layers: each layer's map is upsampled to the input, scaled to 0–1 by itself, and the maps are averaged
  (then scaled to 0–1 again), so a fine layer adds the where and a coarse layer the what.

The default per backbone (:data:`DEFAULT_CAMS`) was chosen by measurement with the shipped FaceNet demo model on
held-out ds-kaggle GS photos (fold 0's maps of the first 24 by name; ``benchmarks/bench_faithfulness.py`` for the
ensemble, deletion and insertion; numbers in ``docs/design.md``). Mainly on the face / Spearman correlation with
the maps of the same model with a random head (lower = the map depends on what was trained):

======================  =====================  ==================  ==================
layer (map size)        Grad-CAM               HiResCAM            Layer-CAM
======================  =====================  ==================  ==================
block35 (17×17)         2/24; -0.03            20/24; 0.17         24/24; 0.88–0.91
reduction A (8×8)       9/24; -0.08 to 0.02    24/24; 0.16–0.28    24/24; 0.89–0.94
block17 (8×8)           13/24; -0.13 to -0.02  24/24; 0.24–0.30    24/24; 0.86–0.93
======================  =====================  ==================  ==================

(two random heads each). Grad-CAM's space-averaged weights leave most maps off the face at every layer (also at the
last, 3×3 stages: 9 and 3 of 40 in a first probe); Layer-CAM is on the face because the frozen FaceNet's activations
are, whatever the head learned (it fails the randomisation check); HiResCAM at block17 is both on the face and
specific to the trained head. With the 5-fold ensemble on the same 24 photos (deletion / insertion areas): Grad-CAM
block17 11/24 on the face, 0.302 / 0.908; HiResCAM block17 24/24, 0.292 / 0.954; HiResCAM block35 + block17 (17×17 +
8×8) 24/24, 0.265 / 0.959: the default, finest and most faithful. A model pack records its choice in ``model.json``
(``"cam": {"method": ..., "layers": [...]}``); a pack without that entry (made before packs recorded one, e.g. the
signed demo pack) gets its backbone's measured default.

:func:`ensemble_cams` computes the maps of several fold models that share their first ``shared_upto`` body stages
(a model pack's frozen body): the shared part runs once for the batch, the earliest CAM layer's input is the only
leaf that needs a gradient, and each fold's maps come from its own backward pass over that one graph; or, with
``combine="ensemble"`` (what screening shows), one map of the ensemble's summed logit from a single backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["CAM_METHODS", "DEFAULT_CAMS", "CamSpec", "cam_for_pack", "default_cam", "ensemble_cams", "model_cams"]

CAM_METHODS = ("gradcam", "hirescam", "layercam")


@dataclass(frozen=True)
class CamSpec:
    """A class-activation map: ``method`` (one of :data:`CAM_METHODS`) over ``layers`` (dotted module names of a
    :class:`gsscreen.models.GSNet`, e.g. ``"body.4"``; several are averaged)."""

    method: str = "gradcam"
    layers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in CAM_METHODS:
            raise ValueError(f"unknown CAM method {self.method!r}; known: {', '.join(CAM_METHODS)}")
        if not self.layers or not all(isinstance(n, str) and n for n in self.layers):
            raise ValueError(f"a CAM needs at least one layer name, got {self.layers!r}")
        object.__setattr__(self, "layers", tuple(self.layers))

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "layers": list(self.layers)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CamSpec:
        if not isinstance(d, Mapping):
            raise ValueError(f"a CAM entry must be an object with method and layers, got {type(d).__name__}")
        layers = d.get("layers")
        if isinstance(layers, str):
            layers = [layers]
        return cls(method=str(d.get("method", "gradcam")), layers=tuple(layers or ()))

    @classmethod
    def parse(cls, text: str) -> CamSpec:
        """``"layercam:body.2,body.4"`` or ``"gradcam:body.4"`` (the command-line form)."""
        method, sep, layers = text.partition(":")
        if not sep:
            raise ValueError(f"CAM must look like METHOD:LAYER[,LAYER...], e.g. layercam:body.2,body.4; got {text!r}")
        return cls(method.strip(), tuple(s.strip() for s in layers.split(",") if s.strip()))

    def label(self) -> str:
        return f"{self.method}:{','.join(self.layers)}"


#: Measured defaults (see the module docstring); a backbone not listed uses Grad-CAM at its ``spec.cam_layer``.
DEFAULT_CAMS: dict[str, CamSpec] = {
    # HiResCAM at the block35 (17×17) and block17 (8×8) outputs at 160×160 input (module docstring).
    "facenet": CamSpec("hirescam", ("body.2", "body.4")),
    # conv5_3 after its ReLU, 14×14 at 224×224: the paper's layer.
    "vgg16": CamSpec("gradcam", ("body.5.8",)),
}


def default_cam(backbone: str) -> CamSpec:
    """The CAM a new study or pack of ``backbone`` is explained with."""
    if backbone in DEFAULT_CAMS:
        return DEFAULT_CAMS[backbone]
    from gsscreen.models.registry import get_spec

    return CamSpec("gradcam", (get_spec(backbone).cam_layer,))


def cam_for_pack(info: Mapping[str, Any], model: nn.Module) -> CamSpec:
    """The CAM recorded in a pack's ``model.json`` (``"cam"``). A pack made before packs recorded it (the shipped
    demo pack among them, whose signed files cannot change) never recorded a layer either: it gets its backbone's
    measured default (:func:`default_cam`). The map is a setting of the pack's consumers, not of its weights, so
    P(GS) and the call are the same either way."""
    if info.get("cam"):
        return CamSpec.from_dict(info["cam"])
    return default_cam(str(model.spec.name))  # type: ignore[union-attr]


def _stage_index(layer: str, n_body: int) -> int:
    parts = layer.split(".")
    if len(parts) < 2 or parts[0] != "body" or not parts[1].isdigit() or int(parts[1]) >= n_body:
        raise ValueError(f"CAM layer {layer!r} must be inside the body (body.<stage>[.<module>...])")
    return int(parts[1])


def _layer_contribution(method: str, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)`` signed map of one layer from its activation and the class gradient (before the ReLU)."""
    import torch

    a, g = act.detach().float(), grad.float()
    if method == "gradcam":
        return (g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1, keepdim=True)
    if method == "hirescam":
        return (g * a).sum(dim=1, keepdim=True)
    return (torch.relu(g) * a).sum(dim=1, keepdim=True)


def _layer_map(method: str, act: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``(B, 1, h, w)`` non-negative map of one layer from its activation and the class gradient."""
    import torch

    return torch.relu(_layer_contribution(method, act, grad))


def _fuse(per_layer: list[torch.Tensor], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Upsample each ``(B, 1, h, w)`` map to ``size``, scale each to 0–1, average: ``(maps (B, H, W), flat (B,))``.

    ``flat`` is True where every layer's map was empty (then the map is zeros).
    """
    import torch.nn.functional as F

    from gsscreen.explain import normalise_cams

    scaled, flats = [], []
    for cam in per_layer:
        up = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
        m, f = normalise_cams(up.cpu().numpy())
        scaled.append(m)
        flats.append(f)
    if len(scaled) == 1:
        return scaled[0], flats[0]
    mean = np.mean(scaled, axis=0)
    maps, flat = normalise_cams(mean)
    return maps, flat | np.all(flats, axis=0)


def no_grad_stages(model: nn.Module, spec: CamSpec, shared_upto: int) -> int:
    """How many leading body stages :func:`ensemble_cams` runs without autograd: those below the earliest CAM
    layer, and that layer's stage too when the layer *is* the whole stage, shared and the only CAM layer in it.

    The gradient is needed from the earliest CAM layer on, never below it. When that layer is a whole stage, the
    stage's output is the leaf the gradient stops at, so the whole stage can run elsewhere without autograd (the
    ``front`` of :func:`ensemble_cams`, e.g. on ONNX Runtime). (``autograd.grad`` already skipped the backward pass
    below the layer, so running the stage without autograd in torch saves no time by itself.)"""
    n_body = len(model.body)  # type: ignore[arg-type]
    stages = [_stage_index(n, n_body) for n in spec.layers]
    first = min(stages)
    s = max(0, min(int(shared_upto), n_body))
    name = spec.layers[stages.index(first)]
    whole = first < s and stages.count(first) == 1 and model.get_submodule(name) is model.body[first]  # type: ignore[index]
    return first + 1 if whole else min(first, s)


def ensemble_cams(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    spec: CamSpec,
    shared_upto: int = 0,
    class_idx: int = 1,
    combine: str = "folds",
    front: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CAM maps of a fold ensemble for a batch: ``(probs (B, K), maps (M, B, H, W) 0–1, flat (M, B))``.

    models: K :class:`~gsscreen.models.GSNet` in eval mode whose ``body[:shared_upto]`` modules are *the same*
    objects (a model pack's frozen body; ``shared_upto=0`` for unrelated models). x: ``(B, 3, H, W)`` float 0–1.
    probs: softmax P(class_idx) of the plain view. No parameter's ``.grad`` is touched; hooks are removed and
    train/eval flags restored even on error.

    combine: ``"folds"``: each fold's own map (M = K), one backward pass per fold; ``"ensemble"``: one map (M = 1)
    of the ensemble's score, the sum of the folds' class logits, from *one* backward pass. A layer's signed map
    (gradient times activation, before the ReLU) is linear in the gradient, so at a shared layer the ensemble map
    is the ReLU of the sum of the folds' signed maps; at a fold's own layer the folds' signed maps are summed. It
    differs from the mean of the folds' maps only in where the ReLU and the 0–1 scaling act, and it costs one
    backward pass over the shared layers instead of K (``benchmarks/bench_faithfulness.py`` compares them).

    front: the first :func:`no_grad_stages` body stages of ``models[0]`` as another callable (``(B, 3, H, W)`` →
    that stage's output, no autograd), e.g. the same layers on ONNX Runtime; by default they run in torch.
    """
    import torch

    if combine not in ("folds", "ensemble"):
        raise ValueError(f"combine must be 'folds' or 'ensemble', got {combine!r}")
    if not models:
        raise ValueError("no models to explain")
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point() or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty (B, 3, H, W) float tensor, got {getattr(x, 'shape', type(x))}")
    n_body = len(models[0].body)  # type: ignore[arg-type]
    stages = [_stage_index(n, n_body) for n in spec.layers]
    first = min(stages)
    s = max(0, min(int(shared_upto), n_body))
    if len(models) > 1 and any(models[k].body[i] is not models[0].body[i]  # type: ignore[index]
                               for k in range(1, len(models)) for i in range(min(s, first + 1))):
        raise ValueError(f"shared_upto={s}, but the fold models do not share those body stages")
    param = next(models[0].parameters(), None)
    device = param.device if param is not None else x.device
    x = x.detach().to(device=device, dtype=torch.float32)

    # Activations: a shared layer (stage < s) fires once, in the shared pass; a fold's own layer once per fold.
    captured: dict[tuple[int, str], torch.Tensor] = {}
    current = {"fold": -1}

    def make_hook(name: str):
        def hook(_m: nn.Module, _a: Any, out: Any) -> Any:
            if not isinstance(out, torch.Tensor) or out.ndim != 4:
                raise ValueError(f"CAM layer {name!r} must output a (B, C, h, w) tensor")
            captured[(current["fold"], name)] = out
            return out.clone()  # an in-place op after this layer must not overwrite what we weigh

        return hook

    handles = []
    modes = {m: m.training for model in models for m in model.modules()}
    try:
        for name, st in zip(spec.layers, stages, strict=True):
            owners = [models[0]] if st < s else list(models)
            for model in owners:
                handles.append(model.get_submodule(name).register_forward_hook(make_hook(name)))
        for model in models:
            model.eval()
        body0 = models[0].body  # type: ignore[union-attr]
        start = no_grad_stages(models[0], spec, s)
        with torch.no_grad():
            if front is not None and start > 0:
                h = front(x)
            else:
                h = x
                for i in range(start):
                    h = body0[i](h)
        with torch.enable_grad():
            h = h.detach().requires_grad_(True)
            if start > first:  # the earliest CAM layer is stage `first` itself: its output is the leaf
                captured[(-1, spec.layers[stages.index(first)])] = h
            for i in range(start, s):
                h = body0[i](h)
            logits = []
            for k, model in enumerate(models):
                current["fold"] = k
                f, begin = h, s  # the shared part's output
                if s == 0 and first > 0:
                    # Nothing shared: this fold runs its own early stages without autograd, then the rest with it.
                    with torch.no_grad():
                        f = x
                        for i in range(first):
                            f = model.body[i](f)  # type: ignore[index]
                    f, begin = f.detach().requires_grad_(True), first
                for i in range(begin, n_body):
                    f = model.body[i](f)  # type: ignore[index]
                out = model.head(f)  # type: ignore[operator]
                logits.append(out[0] if isinstance(out, (tuple, list)) else out)
            current["fold"] = -1
            for lg in logits:
                if lg.ndim != 2 or not 0 <= class_idx < lg.shape[1]:
                    raise ValueError(f"model output must be (B, C) logits with class {class_idx}")
            fold_acts = []
            for k in range(len(logits)):
                acts = [captured.get((-1 if st < s else k, n)) for n, st in zip(spec.layers, stages, strict=True)]
                if any(a is None for a in acts):
                    raise ValueError(f"a CAM layer of {spec.label()} did not run in fold {k}'s forward pass")
                fold_acts.append(acts)
            per_fold: list[list[torch.Tensor]] = []
            if combine == "ensemble":
                per_fold.append(_ensemble_layer_maps(spec, stages, s, logits, fold_acts, class_idx))
            for k, lg in enumerate(logits if combine == "folds" else []):
                acts = fold_acts[k]
                grads = torch.autograd.grad(lg[:, class_idx].sum(), acts, retain_graph=k < len(logits) - 1,
                                            allow_unused=True)
                if any(g is None for g in grads):
                    raise ValueError(f"the class logit does not depend on every layer of {spec.label()}")
                per_fold.append([_layer_map(spec.method, a, g) for a, g in zip(acts, grads, strict=True)])
        with torch.no_grad():
            probs = torch.stack([torch.softmax(lg.detach().float(), dim=1)[:, class_idx] for lg in logits], dim=1)
    finally:
        for hd in handles:
            hd.remove()
        for m, was in modes.items():
            m.training = was
    maps, flats = zip(*(_fuse(layer_maps, tuple(x.shape[2:])) for layer_maps in per_fold), strict=True)
    return probs.cpu().numpy().astype(np.float64), np.stack(maps), np.stack(flats)


def _ensemble_layer_maps(spec: CamSpec, stages: list[int], shared_upto: int, logits: list[torch.Tensor],
                         fold_acts: list[list[torch.Tensor]], class_idx: int) -> list[torch.Tensor]:
    # One backward pass of the summed class logits; each layer's map from the gradients of all its activations
    # (a shared layer: one activation; a fold's own layer: one per fold), summed before the ReLU.
    import torch

    leaves: list[torch.Tensor] = []
    where: list[list[int]] = []  # per CAM layer, the indices of its activations in ``leaves``
    for j, st in enumerate(stages):
        owners = [fold_acts[0][j]] if st < shared_upto else [acts[j] for acts in fold_acts]
        where.append(list(range(len(leaves), len(leaves) + len(owners))))
        leaves.extend(owners)
    score = torch.stack([lg[:, class_idx].sum() for lg in logits]).sum()
    grads = torch.autograd.grad(score, leaves, allow_unused=True)
    if any(g is None for g in grads):
        raise ValueError(f"the class logit does not depend on every layer of {spec.label()}")
    return [torch.relu(sum(_layer_contribution(spec.method, leaves[i], grads[i]) for i in idx))  # type: ignore[misc]
            for idx in where]


def model_cams(model: nn.Module, x: torch.Tensor, spec: CamSpec, class_idx: int = 1,
               batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CAM maps of one model in batches: ``(p (N,), maps (N, H, W), flat (N,))``."""
    ps, ms, fs = [], [], []
    for i in range(0, x.shape[0], batch_size):
        p, m, f = ensemble_cams([model], x[i:i + batch_size], spec, shared_upto=0, class_idx=class_idx)
        ps.append(p[:, 0])
        ms.append(m[0])
        fs.append(f[0])
    return np.concatenate(ps), np.concatenate(ms), np.concatenate(fs)

