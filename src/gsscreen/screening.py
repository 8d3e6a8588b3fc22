"""Screening one photo (or a folder of them) with a packaged model: P(GS), the call, a heatmap, quality flags.

- :class:`ScreeningModel` (from :func:`gsscreen.modelpack.load_model_pack`) holds the fold models of a pack;
  :meth:`ScreeningModel.screen` screens one in-memory ``(H, W, 3)`` uint8 RGB photo and returns a
  :class:`ScreenResult` (used by the web app); :meth:`ScreeningModel.screen_file` reads a path or bytes first.
- :meth:`ScreeningModel.prepare` (decode, detect, align, quality: no torch) and
  :meth:`ScreeningModel.screen_prepared` (the model on a batch) are the two halves of :meth:`ScreeningModel.screen`;
  the batch pipeline (:mod:`gsscreen.screening_pipeline`) and the web app's batcher run them apart.
- :func:`screen_batch` screens many photos (folders and globs expand) into ``results.csv`` / ``results.jsonl`` /
  ``results.json`` + heatmap PNGs (streaming, batched, resumable); one bad photo never stops the rest.
- :func:`resolve_model` finds the pack to use (``--model`` or the shipped demo model).

The hot path (≤ 0.3 s per photo on a 2-core CPU for FaceNet with the heatmap): the photo is decoded at most
:data:`DECODE_MAX_SIDE` large (JPEG DCT scaling) and the face searched on a copy at most :data:`DETECT_MAX_SIDE`
large (then, only if none is found, at the pack's detection size); the frozen body, identical in every fold model,
runs once; the Grad-CAM of all fold models comes from *one* backward pass (the CAM layer's activation is repeated
once per fold in the batch, so each fold's gradient lands in its own slice); the mirrored view used for P(GS) runs
without autograd.
"""

from __future__ import annotations

import copy
import glob
import math
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Future

    import pandas as pd
    import torch
    from torch import nn

    from gsscreen.modelpack import PackContents

from gsscreen.faces.quality import (
    INCONCLUSIVE,
    NOTE_TEXT,
    OUTCOME_TEXT,
    REASON_TEXT,
    QualityLimits,
    assess_quality,
    outcome_of,
)

CALL_GS = OUTCOME_TEXT["refer"]
CALL_NO = OUTCOME_TEXT["no_signal"]
CALL_NONE = OUTCOME_TEXT[INCONCLUSIVE]
NO_MODEL = "no model given and no demo model installed: train one with `gsscreen study` and `gsscreen export`"
#: photos are decoded (and in-memory photos reduced) to at most this long side before screening, px
DECODE_MAX_SIDE = 1600
#: face detection runs on a copy at most this large first, px (then at the pack's ``alignment.max_side``)
DETECT_MAX_SIDE = 640
DISCLAIMER = "Research tool, not a medical device: the result is not a diagnosis."

#: Flags: code -> what a clinician reads. The quality gate's reasons and notes (gsscreen.faces.quality) plus the
#: model-property flags (``{}`` fields are filled per photo).
FLAG_TEXT = {
    **REASON_TEXT,
    **NOTE_TEXT,
    "outside_age_range": "age {age:g} months is outside the training cohort's range ({lo:g}–{hi:g} months)",
    "age_range_unknown": "age range of training cohort unknown",
    "flat_heatmap": "the heatmap carries no information for this photo",
}
#: the former name of the quality limits (kept so older code and saved configs still read)
QualityConfig = QualityLimits


@dataclass
class ScreenResult:
    """The screening of one photo.

    ``outcome`` is the call: ``"refer"``, ``"no_signal"`` or ``"inconclusive"`` (codes of
    :data:`gsscreen.faces.quality.OUTCOMES`; ``call`` is its text). A call is made only when the quality gate finds
    the face usable; otherwise the outcome is inconclusive with the gate's ``reasons`` (codes of
    :data:`gsscreen.faces.quality.REASON_TEXT`), even when P(GS) could be computed. ``p_gs`` is the ensemble's
    P(GS) in 0–1 (None when no face was scored, see ``problem``); ``suspected`` is ``p_gs >= threshold`` when a
    call was made, else None. ``faces``: every face found, ``{"box": [x0, y0, x1, y1] original px, "score",
    "scored": bool}``, the scored one first; ``quality``: the gate's measures.
    P(GS) is calibrated when the pack carries a calibration map (applied to each fold's P(GS) ``fold_p_gs`` or, in
    older packs, to the raw ensemble mean ``p_gs_raw``) and adjusted to ``prevalence`` when one was given;
    ``threshold`` is that of ``operating_point``, on the same scale (see :mod:`gsscreen.decision`).

    Arrays (not in :meth:`to_dict`): ``faces_overlay`` the photo (at most 640 px) with every face boxed, the
    scored one thick orange and numbered 1; ``heatmap`` ``(S, S)`` float32 0–1 at
    the model's input size, ``overlay`` and ``crop`` ``(C, C, 3)`` uint8 RGB at the alignment's crop size.
    ``face``: ``box`` (x0, y0, x1, y1 original px), ``iod_px``, ``yaw`` (nose offset / IOD), ``roll_deg``,
    ``n_faces``, ``detector_score``.
    """

    file: str | None
    p_gs: float | None
    suspected: bool | None
    call: str
    threshold: float
    model_id: str
    fold_p_gs: list[float] = field(default_factory=list)
    p_gs_raw: float | None = None
    operating_point: str = ""
    prevalence: float | None = None
    outcome: str = INCONCLUSIVE
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    flag_messages: list[str] = field(default_factory=list)
    problem: str | None = None
    face: dict[str, Any] | None = None
    seconds: float = 0.0
    #: drop in P(GS) when each facial region is greyed out (gsscreen.explain_regions), with the heatmap
    regions: dict[str, float] | None = None
    heatmap: np.ndarray | None = field(default=None, repr=False)
    overlay: np.ndarray | None = field(default=None, repr=False)
    crop: np.ndarray | None = field(default=None, repr=False)
    faces_overlay: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.p_gs is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no pixel data)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("heatmap", "overlay", "crop", "faces_overlay")}
        d["disclaimer"] = DISCLAIMER
        return d


# ----------------------------------------------------------------------------------------------------- the model


def _cam_index(layer: str) -> int | None:
    parts = layer.split(".")
    if len(parts) == 2 and parts[0] == "body" and parts[1].isdigit():
        return int(parts[1])
    return None


class ScreeningModel:
    """A loaded model pack: the fold models, the decision threshold, the alignment settings and the card.

    Build with :func:`gsscreen.modelpack.load_model_pack`. Thread safety: one call at a time (the web app holds a
    lock around :meth:`screen`).
    """

    def __init__(self, info: dict[str, Any], base: nn.Module | None, models: list[nn.Module], card: str = "",
                 path: Path | None = None, quality: QualityLimits | None = None) -> None:
        from gsscreen.faces.align import AlignConfig

        self.info = info
        self.base = base
        self.models = models
        self.card = card
        self.path = path
        # The pack's own limits (older packs have none: the defaults, measured on the shipped model, apply).
        self.quality = quality or QualityLimits.from_dict(info.get("quality"))
        self.set_decision()
        self.input_size = int(info["input_size"])
        self.tta_flip = bool(info.get("tta_flip", True))
        if base is None:  # preparation only (:meth:`for_preparation`): no network, nothing to explain
            self.n_body = self.shared_upto = 0
            self.cam_layer, self.cam_index, self.cam = "", None, None
        else:
            self.n_body = len(base.body)  # type: ignore[arg-type]
            self.shared_upto = min(int(info.get("unfreeze_from", self.n_body)), self.n_body)
            self.cam_layer = str(base.spec.cam_layer)  # type: ignore[union-attr]
            self.cam_index = _cam_index(self.cam_layer)
            from gsscreen.explain_cam import cam_for_pack

            self.cam = cam_for_pack(info, base)  # the pack's recorded CAM; older packs: Grad-CAM at cam_layer
        known = set(AlignConfig().key_fields())
        al = {k: tuple(v) if isinstance(v, list) else v for k, v in (info.get("alignment") or {}).items() if k in known}
        self.align_config = AlignConfig(**al)
        # Speed (see the module docstring): photos are decoded at most DECODE_MAX_SIDE large (JPEG DCT scaling makes
        # a 12-MP photo ~3x cheaper to read) and the face is searched on a copy at most DETECT_MAX_SIDE large; the
        # crop is still warped from the decoded copy, where a face that is not flagged small spans hundreds of px,
        # far more than the 224-px crop. A photo whose face is too small to be found at DETECT_MAX_SIDE is retried
        # with the pack's own detection size before "no face" is reported.
        self.decode_max_side = min(DECODE_MAX_SIDE, int(self.align_config.load_max_side))
        self.detect_config = replace(self.align_config, max_side=min(DETECT_MAX_SIDE, self.align_config.max_side))
        self.onnx_body: Any = None  # the shared body on ONNX Runtime, and the CAM's no-grad stages (use_onnx)
        self.onnx_front: Any = None

    def set_decision(self, operating_point: str | None = None, prevalence: float | None = None) -> None:
        """Use another operating point of the pack and/or a clinic's prevalence (raises ``DecisionError``)."""
        from gsscreen.decision import DecisionRule

        self.decision = DecisionRule.from_info(self.info, operating_point, prevalence)
        self.threshold = self.decision.threshold

    # --- identity
    @property
    def model_id(self) -> str:
        return f"{self.info.get('name', 'model')}@{str(self.info.get('weights_sha256', ''))[:12]}"

    @property
    def age_range(self) -> tuple[float, float] | None:
        r = self.info.get("age_range_months")
        return (float(r[0]), float(r[1])) if r else None

    @property
    def is_demo(self) -> bool:
        return bool(self.info.get("demo"))

    def summary(self) -> dict[str, Any]:
        """What a user (or the API's ``/api/model``) needs to know about the model."""
        keys = ("name", "description", "demo", "backbone", "input_size", "n_folds", "threshold", "threshold_rule",
                "threshold_method", "age_range_months", "cohort", "cv_metrics", "pooled_auc", "created",
                "gsscreen_version", "weights_sha256")
        return {"model_id": self.model_id, **{k: self.info.get(k) for k in keys}, **self.decision.describe()}

    # --- tensors
    def model_input(self, crop: np.ndarray) -> np.ndarray:
        """``(C, C, 3)`` uint8 crop → ``(S, S, 3)`` uint8 at the model's input size (PIL bilinear, like training)."""
        from PIL import Image

        if crop.shape[0] != self.input_size or crop.shape[1] != self.input_size:
            im = Image.fromarray(crop).resize((self.input_size, self.input_size), Image.Resampling.BILINEAR,
                                              reducing_gap=None)
            crop = np.asarray(im)
        return np.array(crop, dtype=np.uint8)

    def to_tensor(self, crop: np.ndarray) -> torch.Tensor:
        """``(C, C, 3)`` uint8 crop → ``(1, 3, S, S)`` float32 0–1 (resized like the training data: PIL bilinear)."""
        import torch

        return torch.from_numpy(self.model_input(crop)).permute(2, 0, 1)[None].float().div_(255.0)

    def _run(self, model: nn.Module, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        body = model.body  # type: ignore[union-attr]
        for i in range(start, stop):
            x = body[i](x)
        return x

    def _shared_body(self, x: torch.Tensor) -> torch.Tensor:
        # The frozen body every fold shares, without autograd: on ONNX Runtime once use_onnx() enabled it.
        onnx = getattr(self, "onnx_body", None)
        return onnx(x) if onnx is not None else self._run(self.base, x, 0, self.shared_upto)

    def use_onnx(self, enable: bool = True, threads: int = 1) -> str:
        """Run the shared frozen body on ONNX Runtime (see :mod:`gsscreen.models.onnx_body`) for P(GS) without
        autograd, and the stages the CAM runs without autograd (:func:`gsscreen.explain_cam.no_grad_stages`) there
        too; the CAM's gradient keeps torch. Returns "" when enabled, else why not (torch is used)."""
        self.onnx_body = self.onnx_front = None
        if not enable:
            return "disabled"
        from gsscreen.models.onnx_body import load_onnx_body

        self.onnx_body, why = load_onnx_body(self, threads)
        front = self._cam_front_stages()
        if self.onnx_body is not None and 0 < front < self.shared_upto:
            self.onnx_front, _ = load_onnx_body(self, threads, upto=front)  # None: those stages stay on torch
        elif self.onnx_body is not None and front == self.shared_upto:
            self.onnx_front = self.onnx_body
        return why

    @property
    def _ensemble_cam(self) -> bool:
        # The pack's CAM is an explain_cam spec (one map of the ensemble), not the older single-layer Grad-CAM at the
        # backbone's cam_layer, which _explain computes fold by fold.
        return self.cam is not None and (self.cam.layers != (self.cam_layer,) or self.cam.method != "gradcam")

    def _cam_front_stages(self) -> int:
        # How many leading body stages the ensemble CAM runs without autograd (0: none, or not that kind of CAM).
        if not self._ensemble_cam:
            return 0
        from gsscreen.explain_cam import no_grad_stages

        try:
            return no_grad_stages(self.base, self.cam, self.shared_upto)
        except ValueError:
            return 0

    def _fold_logits(self, k: int, f: torch.Tensor, start: int | None = None) -> torch.Tensor:
        m = self.models[k]
        x = self._run(m, f, self.shared_upto if start is None else start, self.n_body)
        return m.head(x)[0]  # type: ignore[operator]

    def predict_tensor(self, x: torch.Tensor) -> np.ndarray:
        """Per-fold P(GS) ``(B, K)`` for inputs ``(B, 3, S, S)`` in 0–1 (mirror averaged in when the study did)."""
        import torch

        with torch.inference_mode():
            views = torch.cat([x, torch.flip(x, dims=[3])]) if self.tta_flip else x
            f = self._shared_body(views)
            out = []
            for k in range(len(self.models)):
                p = torch.softmax(self._fold_logits(k, f).float(), dim=1)[:, 1]
                out.append(p.view(-1, x.shape[0]).mean(0))
            return torch.stack(out, dim=1).cpu().numpy().astype(np.float64)

    def explain_tensor(self, x: torch.Tensor, on_plain: Callable[[np.ndarray], None] | None = None,
                       mirror: Future | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-fold P(GS) ``(B, K)``, CAM maps ``(M, B, S, S)`` (each 0–1) and flat flags ``(M, B)``.

        The maps explain the plain view; P(GS) averages in the mirror as in the study's evaluation. ``on_plain``,
        when given, receives the plain view's per-fold P(GS) ``(B, K)`` as soon as the CAM's forward pass has it
        (the region attributions need it and need not run that view again).

        The pack's CAM (:mod:`gsscreen.explain_cam`, e.g. HiResCAM) gives one map of the ensemble's summed logit
        (M = 1) from a single backward pass. The older single-layer Grad-CAM gives each fold's map (M = K), in one
        backward pass for all folds, equal to :func:`gsscreen.explain.compute_cams` run on each fold alone (tested).

        The mirror view needs no gradient: when it can (:meth:`_beside_cam`) it runs on ONNX Runtime in the side
        thread while torch computes the CAM, so a free core takes it (``mirror``: its future, when the caller
        started it).
        """
        if mirror is None:
            mirror = self._start_mirror(x)
        try:
            return self._explain(x, on_plain, mirror)
        except BaseException:
            if mirror is not None:
                mirror.exception()  # the side thread is done with this batch before the error goes up
            raise

    def _explain(self, x: torch.Tensor, on_plain: Callable[[np.ndarray], None] | None,
                 mirror: Future | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        from gsscreen.explain import normalise_cams

        k_n, b = len(self.models), x.shape[0]
        c, s = self.cam_index, self.shared_upto
        if self._ensemble_cam:
            from gsscreen.explain_cam import ensemble_cams

            p, maps, flat = ensemble_cams(self.models, x, self.cam, shared_upto=s, combine="ensemble",
                                          front=getattr(self, "onnx_front", None))
            return self._with_mirror(x, p, on_plain, mirror), maps, flat
        if c is None or c >= self.n_body:
            return self._explain_fallback(x, on_plain)
        with torch.no_grad():
            if c < s:  # the CAM layer is in the shared frozen body
                a = self._run(self.base, x, 0, c + 1)
                leaves = [a.repeat(k_n, 1, 1, 1).requires_grad_(True)]
                with torch.enable_grad():
                    f = self._run(self.base, leaves[0].clone(), c + 1, s)
                    logits = [self._fold_logits(k, f[k * b:(k + 1) * b]) for k in range(k_n)]
                acts = leaves[0]
            else:  # the CAM layer is in each fold's trained part
                f0 = self._run(self.base, x, 0, s)
                leaves, logits = [], []
                with torch.enable_grad():
                    f = f0.detach().requires_grad_(True)
                    for k in range(k_n):
                        a_k = self._run(self.models[k], f, s, c + 1)
                        leaves.append(a_k)
                        logits.append(self._fold_logits(k, a_k.clone(), start=c + 1))
                acts = None
        with torch.enable_grad():
            score = sum(lg[:, 1].sum() for lg in logits)
            grads = torch.autograd.grad(score, leaves)
        with torch.no_grad():
            act = acts if acts is not None else torch.cat(leaves)
            grad = grads[0] if acts is not None else torch.cat(grads)
            w = grad.float().mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((w * act.detach().float()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)[:, 0]
            p_plain = torch.stack([torch.softmax(lg.detach().float(), dim=1)[:, 1] for lg in logits], dim=1)
        maps, flat = normalise_cams(cam.detach().float().cpu().numpy())
        p = self._with_mirror(x, p_plain.cpu().numpy().astype(np.float64), on_plain, mirror)
        return p, maps.reshape(k_n, b, *x.shape[2:]), flat.reshape(k_n, b)

    def _start_mirror(self, x: torch.Tensor) -> Future | None:
        # The mirror view's per-fold P(GS), started in the side thread when it may run beside the CAM; else None.
        if not (self.tta_flip and self._beside_cam()):
            return None
        import torch

        return _side_thread().submit(self.predict_tensor_views, torch.flip(x, dims=[3]))

    def _with_mirror(self, x: torch.Tensor, p_plain: np.ndarray, on_plain: Callable[[np.ndarray], None] | None,
                     mirror: Future | None = None) -> np.ndarray:
        # The plain view's per-fold P(GS) (B, K) handed on, then averaged with the mirror's when the study did.
        import torch

        if on_plain is not None:
            on_plain(p_plain)
        if not self.tta_flip:
            return p_plain
        p_mirror = mirror.result() if mirror is not None else self.predict_tensor_views(torch.flip(x, dims=[3]))
        return (p_plain + p_mirror) / 2.0

    def predict_tensor_views(self, x: torch.Tensor) -> np.ndarray:
        """Per-fold P(GS) ``(B, K)`` of exactly these inputs (no mirror averaging)."""
        import torch

        with torch.inference_mode():
            f = self._shared_body(x)
            ps = [torch.softmax(self._fold_logits(k, f).float(), dim=1)[:, 1] for k in range(len(self.models))]
            return torch.stack(ps, dim=1).cpu().numpy().astype(np.float64)

    def _explain_fallback(self, x: torch.Tensor, on_plain: Callable[[np.ndarray], None] | None = None,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # A CAM layer outside ``body.N`` (a head layer): one Grad-CAM pass per fold model.
        from gsscreen.explain import compute_cams

        res = [compute_cams(m, x, layer=self.cam_layer) for m in self.models]
        p = self._with_mirror(x, np.stack([r.probs[:, 1] for r in res], axis=1).astype(np.float64), on_plain)
        return p, np.stack([r.maps for r in res]), np.stack([r.flat for r in res])

    # --- photos
    def _face_info(self, face: Any, measures: dict[str, Any], factor: float) -> dict[str, Any]:
        m = measures
        return {"box": [float(v) * factor for v in face.box], "iod_px": m["iod_px"], "yaw": m["yaw"],
                "roll_deg": m["roll_deg"], "n_faces": int(face.n_faces), "detector_score": m["detector_score"],
                "sharpness": m["sharpness"], "rotation_deg": m["rotation_deg"]}

    def _age_flags(self, age_months: float | None) -> list[tuple[str, dict[str, Any]]]:
        if age_months is None:
            return []
        r = self.age_range
        if r is None:
            return [("age_range_unknown", {})]
        if not r[0] <= age_months <= r[1]:
            return [("outside_age_range", {"age": age_months, "lo": r[0], "hi": r[1]})]
        return []

    def _empty(self, file: str | None, problem: str, flag: str, t0: float) -> ScreenResult:
        return ScreenResult(file=file, p_gs=None, suspected=None, call=CALL_NONE, threshold=self.threshold,
                            model_id=self.model_id, operating_point=self.decision.operating_point.name,
                            outcome=INCONCLUSIVE, reasons=[flag], flags=[flag],
                            flag_messages=[FLAG_TEXT[flag]], problem=problem, seconds=time.perf_counter() - t0)

    def screen(self, image_rgb: np.ndarray, age_months: float | None = None, heatmap: bool = True,
               file: str | None = None, scale: float = 1.0, regions: bool | None = None) -> ScreenResult:
        """Screen one ``(H, W, 3)`` uint8 RGB photo.

        ``age_months`` (optional, ≥ 0) enables the age-range flag. ``scale`` = original size / size of
        ``image_rgb`` (when the caller already reduced the photo), so face sizes are reported in original pixels.
        No face → a result with ``p_gs=None``, flag ``no_face`` and the reason in ``problem`` (not an exception).
        Equal to :meth:`prepare` followed by :meth:`screen_prepared` on a batch of one.
        """
        prep = self.prepare(image_rgb, age_months=age_months, file=file, scale=scale)
        return prep if isinstance(prep, ScreenResult) else self.screen_prepared([prep], heatmap, regions)[0]

    def prepare(self, image_rgb: np.ndarray, age_months: float | None = None, file: str | None = None,
                scale: float = 1.0) -> PreparedPhoto | ScreenResult:
        """Everything of :meth:`screen` before the model: reduce, detect, align, quality flags.

        Returns a :class:`PreparedPhoto` (picklable, no torch: the batch pipeline runs this in worker processes on
        :meth:`preprocessor`) or, when the photo cannot be screened, its final :class:`ScreenResult`.
        """
        found = self._find_face(image_rgb, age_months, file, scale)
        if isinstance(found, ScreenResult):
            return found
        img, factor, face, t0 = found
        return self._prepared(img, face, factor, age_months, file, t0)

    def _find_face(self, image_rgb: np.ndarray, age_months: float | None, file: str | None,
                   scale: float) -> tuple[np.ndarray, float, Any, float] | ScreenResult:
        # Validate, reduce, detect and align: (analysed image, original/analysed scale, AlignedFace, start time),
        # or the final result when no face is found.
        from gsscreen.faces.align import NoFaceError

        t0 = time.perf_counter()
        if age_months is not None and (not math.isfinite(age_months) or age_months < 0):
            raise ValueError(f"age_months must be a number >= 0, got {age_months}")
        img = np.asarray(image_rgb)
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(f"screen needs an (H, W, 3) uint8 RGB image, got {img.dtype} {img.shape}")
        # Reduce big photos before detection (as the study's batch alignment does: crops come from this copy).
        img, factor = self._reduced(img, float(scale))
        try:
            face = self._align(img)
        except NoFaceError as exc:
            return self._empty(file, exc.reason, "no_face", t0)
        return img, factor, face, t0

    def _prepared(self, img: np.ndarray, face: Any, factor: float, age_months: float | None, file: str | None,
                  t0: float, chosen: bool = False) -> PreparedPhoto:
        # The quality gate and the result's face data for one aligned face of ``img`` (``chosen``: the user picked
        # this face, e.g. --face all, so other faces do not make the photo ambiguous).
        from gsscreen.faces.overlay import draw_faces

        verdict = assess_quality(img, face, self.quality, scale=factor, single_face_chosen=chosen)
        finfo = self._face_info(face, verdict.measures, factor)
        age = self._age_flags(age_months)
        flags = [*verdict.reasons, *verdict.notes, *(f for f, _ in age)]
        messages = verdict.messages + [FLAG_TEXT[f].format(**kw) for f, kw in age]
        faces = [{"box": finfo["box"], "score": finfo["detector_score"], "scored": True}]
        faces += [{"box": [float(v) * factor for v in o["box"]], "score": round(float(o["score"]), 4), "scored": False}
                  for o in face.other_faces]
        return PreparedPhoto(file=file, crop=face.image, model_input=self.model_input(face.image), flags=flags,
                             flag_messages=messages, face=finfo, seconds=time.perf_counter() - t0,
                             usable=verdict.usable, reasons=list(verdict.reasons), notes=list(verdict.notes),
                             faces=faces, quality=verdict.measures, landmarks=np.asarray(face.landmarks),
                             faces_overlay=draw_faces(img, faces, scale=factor, max_side=DETECT_MAX_SIDE))

    def screen_faces(self, image_rgb: np.ndarray, age_months: float | None = None, heatmap: bool = True,
                     file: str | None = None, scale: float = 1.0, regions: bool | None = None,
                     ) -> list[ScreenResult]:
        """Screen *every* face of one photo, each as its own result (``gsscreen screen --face all``): the largest
        first, then the others in the detector's order; in each result ``faces`` marks that face as the scored one.
        Each face passes the quality gate on its own (the other faces do not make it ambiguous). No face → one
        result saying so."""
        from gsscreen.faces.multi import align_each_face

        found = self._find_face(image_rgb, age_months, file, scale)
        if isinstance(found, ScreenResult):
            return [found]
        img, factor, face, t0 = found
        batch = [self._prepared(img, f, factor, age_months, file, t0, chosen=True)
                 for f in align_each_face(img, face, self.align_config)]
        return self.screen_prepared(batch, heatmap, regions)

    def _reduced(self, img: np.ndarray, factor: float) -> tuple[np.ndarray, float]:
        import cv2

        limit = self.decode_max_side
        if max(img.shape[:2]) > limit:
            s = limit / max(img.shape[:2])
            img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                             interpolation=cv2.INTER_AREA)
            factor /= s
        return img, factor

    def _align(self, img: np.ndarray) -> Any:
        from gsscreen.faces.align import NoFaceError, align_face

        try:
            return align_face(img, self.detect_config)
        except NoFaceError:
            if max(img.shape[:2]) <= self.detect_config.max_side or self.detect_config == self.align_config:
                raise
            # A small face in a big photo: search at full size, plainly (the retries, for faces that fill the
            # frame or are turned, were done at the small size; at 4x the pixels they would cost 4x the work).
            return align_face(img, replace(self.align_config, retry=False))

    def screen_prepared(self, batch: list[PreparedPhoto], heatmap: bool = True,
                        regions: bool | None = None) -> list[ScreenResult]:
        """The model on a batch of prepared photos (one batched forward; one batched CAM pass when ``heatmap``):
        one :class:`ScreenResult` each, in order. ``seconds`` = the photo's preparation time plus its share of the
        batch.

        ``regions``: also the facial-region attributions (five more forward passes a photo, more than all the
        rest of the model's work); None = with the heatmap. They need the heatmap's forward pass: without a
        heatmap there are none."""
        import torch

        if not batch:
            return []
        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack([b.model_input for b in batch])).permute(0, 3, 1, 2).float().div_(255.0)
        region_deltas = None
        if regions_wanted(heatmap, regions):
            # Facial-region attributions beside the heatmap: one forward of each photo's five occluded views. On
            # ONNX Runtime they run on a second thread while torch computes the CAM (both release the GIL), so a
            # free core halves the wait. The unoccluded view they are compared with is the CAM's own forward pass
            # (the plain view's P(GS)): the side thread waits for it instead of running that view again.
            from concurrent.futures import Future

            from gsscreen.explain_regions import pack_regions

            plain: Future = Future()
            # the mirror view first: the CAM waits for it, the regions wait for the CAM's plain view
            mirror = self._start_mirror(x)
            side = _side_thread().submit(pack_regions, self, batch, plain.result) if self._beside_cam() else None
            try:
                p, maps, flat = self.explain_tensor(x, on_plain=lambda pp: plain.set_result(pp.mean(axis=1)),
                                                    mirror=mirror)
            except BaseException as exc:
                if not plain.done():
                    plain.set_exception(exc)
                if side is not None:
                    side.exception()  # the side thread is done with this batch before the error goes up
                raise
            region_deltas = side.result() if side is not None else pack_regions(self, batch, plain.result)
        elif heatmap:
            p, maps, flat = self.explain_tensor(x)
        else:
            p, maps, flat = self.predict_tensor(x), None, None
        share = (time.perf_counter() - t0) / len(batch)
        out = [self._finish(b, p[i], None if maps is None else maps[:, i], None if flat is None else flat[:, i],
                            share) for i, b in enumerate(batch)]
        for r, reg in zip(out, region_deltas or [], strict=False):
            r.regions = reg
        return out

    def _beside_cam(self) -> bool:
        # Views without autograd (the mirror, the occluded views) may run in the side thread beside the CAM only
        # when they touch no torch module the CAM hooks: the shared body on ONNX Runtime, every CAM layer inside
        # it (the fold heads after it carry no hooks).
        if getattr(self, "onnx_body", None) is None:
            return False
        from gsscreen.explain_cam import _stage_index

        try:
            return all(_stage_index(n, self.n_body) < self.shared_upto for n in self.cam.layers)
        except ValueError:
            return False

    def _finish(self, prep: PreparedPhoto, fold_p: np.ndarray, maps: np.ndarray | None, flat: np.ndarray | None,
                seconds: float) -> ScreenResult:
        # One photo's result from its per-fold P(GS) (K,) and, with a heatmap, its fold maps (K, S, S) + flat (K,).
        t0 = time.perf_counter()
        flags, messages = list(prep.flags), list(prep.flag_messages)
        hm = ov = None
        if maps is not None and flat is not None:
            hm = maps.mean(axis=0)
            if hm.max() > 0:
                hm = hm / hm.max()  # the mean of 0–1 maps, stretched so its peak is 1 for display
            if flat.all():
                flags.append("flat_heatmap")
                messages.append(FLAG_TEXT["flat_heatmap"])
            from gsscreen.explain import overlay

            ov = overlay(prep.crop, hm)
        fold_ps = [float(v) for v in fold_p]
        p_raw = float(np.mean(fold_ps))
        p_gs = self.decision.ensemble_probability(fold_ps)
        # No call on an unusable face: P(GS) is still reported, but the outcome is inconclusive.
        outcome = outcome_of(prep.usable, p_gs, self.threshold)
        reasons = list(prep.reasons)
        if outcome != INCONCLUSIVE and self.decision.borderline(p_gs):
            outcome = INCONCLUSIVE  # so close to the threshold that another reading of the photo could cross it
            reasons.append("borderline")
        suspected = None if outcome == INCONCLUSIVE else outcome == "refer"
        return ScreenResult(
            file=prep.file, p_gs=p_gs, suspected=suspected, call=OUTCOME_TEXT[outcome],
            threshold=self.threshold, model_id=self.model_id, fold_p_gs=fold_ps, p_gs_raw=p_raw,
            operating_point=self.decision.operating_point.name, prevalence=self.decision.prevalence, outcome=outcome,
            reasons=reasons, notes=list(prep.notes), faces=list(prep.faces), quality=dict(prep.quality),
            flags=flags,
            flag_messages=messages, face=prep.face, seconds=prep.seconds + seconds + time.perf_counter() - t0,
            heatmap=hm.astype(np.float32) if hm is not None else None, overlay=ov, crop=prep.crop,
            faces_overlay=prep.faces_overlay,
        )

    def prepare_file(self, src: str | Path | bytes, age_months: float | None = None,
                     max_pixels: int | None = None) -> PreparedPhoto | ScreenResult:
        """Read a photo (path or bytes; decoded at most :data:`DECODE_MAX_SIDE` large) and :meth:`prepare` it.

        An unreadable photo gives a result with flag ``unreadable`` and the reason in ``problem``.
        """
        from gsscreen.faces.align import UnsuitablePhotoError, check_photo_shape
        from gsscreen.faces.io import DEFAULT_MAX_PIXELS, ImageError, load_image_scaled

        t0 = time.perf_counter()
        name = None if isinstance(src, (bytes, bytearray, memoryview)) else str(src)
        try:  # a sliver or strip is refused from its header, before decoding (bounded work, issue #11)
            img, factor = load_image_scaled(src, self.decode_max_side,
                                            max_pixels or DEFAULT_MAX_PIXELS, check_shape=check_photo_shape)
        except ImageError as exc:
            return self._empty(name, exc.reason, "unreadable", t0)
        except UnsuitablePhotoError as exc:
            return self._empty(name, exc.reason, "no_face", t0)
        prep = self.prepare(img, age_months=age_months, file=name, scale=factor)
        prep.seconds = time.perf_counter() - t0
        return prep

    def screen_file(self, src: str | Path | bytes, age_months: float | None = None, heatmap: bool = True,
                    max_pixels: int | None = None, regions: bool | None = None) -> ScreenResult:
        """Read a photo (path or bytes; decoded at most :data:`DECODE_MAX_SIDE` large) and :meth:`screen` it.

        An unreadable photo gives a result with flag ``unreadable`` and the reason in ``problem``.
        """
        prep = self.prepare_file(src, age_months=age_months, max_pixels=max_pixels)
        return prep if isinstance(prep, ScreenResult) else self.screen_prepared([prep], heatmap, regions)[0]

    @classmethod
    def for_preparation(cls, contents: PackContents) -> ScreeningModel:
        """A model without networks, built from a pack's verified metadata alone
        (:func:`gsscreen.modelpack.read_pack_info`; torch is not imported): it prepares photos exactly as the
        loaded pack's :meth:`preprocessor` does, so preparation can start while the networks load."""
        return cls(contents.info, None, [], card=contents.card, path=contents.path)

    @property
    def has_networks(self) -> bool:
        """False for a copy that only prepares photos (:meth:`preprocessor`, :meth:`for_preparation`)."""
        return self.base is not None

    def preprocessor(self) -> ScreeningModel:
        """A copy without the networks, for :meth:`prepare` / :meth:`prepare_file` in worker processes (small to
        pickle; unpickling it does not import torch)."""
        light = copy.copy(self)
        light.base = None  # type: ignore[assignment]
        light.models = []
        light.onnx_body = light.onnx_front = None
        return light


def regions_wanted(heatmap: bool, regions: bool | None) -> bool:
    """Whether a screening computes the facial-region attributions: asked for (None = with the heatmap), and only
    with the heatmap, whose forward pass they share."""
    return bool(heatmap) and (regions is None or bool(regions))


_SIDE: list[Any] = []
_SIDE_LOCK = threading.Lock()


def _side_thread() -> Any:
    """One process-wide helper thread: the views without autograd (mirror, occluded) beside the CAM."""
    with _SIDE_LOCK:
        if not _SIDE:
            from concurrent.futures import ThreadPoolExecutor

            _SIDE.append(ThreadPoolExecutor(1, thread_name_prefix="gsscreen-side"))
        return _SIDE[0]


@dataclass
class PreparedPhoto:
    """A photo ready for the model (from :meth:`ScreeningModel.prepare`; picklable, no torch).

    ``crop``: the aligned face ``(C, C, 3)`` uint8 RGB; ``model_input``: the crop at the model's input size
    ``(S, S, 3)`` uint8; ``flags`` / ``flag_messages`` / ``face`` / ``reasons`` / ``notes`` / ``faces`` /
    ``quality``: as in :class:`ScreenResult`; ``usable``: the quality gate's verdict; ``seconds``: time spent so far.
    """

    file: str | None
    crop: np.ndarray = field(repr=False)
    model_input: np.ndarray = field(repr=False)
    flags: list[str] = field(default_factory=list)
    flag_messages: list[str] = field(default_factory=list)
    face: dict[str, Any] | None = None
    seconds: float = 0.0
    usable: bool = False
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    faces: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, Any] = field(default_factory=dict)
    landmarks: np.ndarray | None = field(default=None, repr=False)  # (5, 2) in crop pixels
    faces_overlay: np.ndarray | None = field(default=None, repr=False)
    #: ``faces_overlay`` already encoded as a PNG file's bytes (then ``faces_overlay`` is None): folder screening's
    #: workers encode it, so the model's process does not
    faces_png: bytes | None = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------- model lookup


def demo_model_path() -> Path:
    """Where the shipped demo model lives (it may be absent)."""
    return Path(__file__).resolve().parent / "assets" / "demo_model.gss"


def resolve_model(model: str | Path | None) -> tuple[Path, bool]:
    """``(pack path, is_demo)``: ``model`` when given, else the shipped demo model; raises ``FileNotFoundError``
    with :data:`NO_MODEL` when neither exists."""
    if model is not None:
        p = Path(model).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{p}: model pack not found")
        return p, False
    demo = demo_model_path()
    if not demo.is_file():
        raise FileNotFoundError(NO_MODEL)
    return demo, True


# ----------------------------------------------------------------------------------------------------- batch


@dataclass
class ScreenConfig:
    """Settings of ``gsscreen screen`` (saved as ``config.json`` in the output folder)."""

    inputs: list[str] = field(default_factory=list)
    model: str | None = None
    age_months: float | None = None
    heatmap: bool = True
    #: the facial-region bars beside each heatmap (five more forward passes a photo; ``--regions``)
    regions: bool = False
    out_dir: str = "screening"
    quality: QualityLimits = field(default_factory=QualityLimits)
    face: str = "largest"  # which face: "largest" (one row per photo) or "all" (one row per face)
    batch_size: int = 32  # photos per model batch (and per write of the result tables)
    workers: int = 2  # processes that decode, detect and align; 0 = all in this process
    runtime: str = "auto"  # the shared frozen body: "auto" (ONNX Runtime when it can, models/onnx_body) or "torch"


_GLOB_CHARS = set("*?[")


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Photos named by ``inputs`` (files, folders searched recursively, glob patterns), in order, without
    duplicates; plus ``(input, problem)`` for inputs that name nothing."""
    from gsscreen.imagefiles import find_images

    out: list[str] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append(p)

    for entry in inputs:
        p = Path(entry).expanduser()
        if p.is_dir():
            found = find_images(p)
            if not found:
                problems.append((entry, "folder holds no images"))
            for f in found:
                add(str(f))
        elif not p.exists() and _GLOB_CHARS & set(entry):
            matches = sorted(glob.glob(str(p), recursive=True))
            files = [m for m in matches if Path(m).is_file()]
            if not files:
                problems.append((entry, "no file matches this pattern"))
            for m in files:
                add(m)
        else:
            add(str(p))  # a missing file becomes a row saying so
    return out, problems


RESULT_COLUMNS = ("file", "p_gs", "outcome", "call", "reasons", "threshold", "operating_point", "flags", "problem",
                  "heatmap", "iod_px", "yaw", "roll_deg", "n_faces", "fold_p_gs")


def screen_batch(model: ScreeningModel, cfg: ScreenConfig, progress: bool = True,
                 networks: Callable[[], ScreeningModel] | None = None) -> pd.DataFrame:
    """Screen every photo of ``cfg.inputs`` into ``cfg.out_dir``: ``results.csv``, ``results.jsonl`` (both appended
    a batch at a time; a rerun resumes), ``results.json``, ``heatmaps/<stem>_gradcam.png`` and ``config.json``.
    Returns the results table (one row per photo, in input order; a photo that fails has ``problem`` set and no
    ``p_gs``). The work is done by :func:`gsscreen.screening_pipeline.run_screening`.

    ``networks``: with a preparation-only ``model`` (:meth:`ScreeningModel.for_preparation`), the function that
    loads the full one; photos are prepared while it runs."""
    from gsscreen.screening_pipeline import run_screening

    if cfg.face not in ("largest", "all"):
        raise ValueError(f"face must be 'largest' or 'all', got {cfg.face!r}")
    if cfg.face == "all":
        from gsscreen.screening_faces import screen_each_face

        return screen_each_face(model if model.has_networks or networks is None else networks(), cfg,
                                progress=progress)
    return run_screening(model, cfg, progress=progress, networks=networks)


def format_table(table: pd.DataFrame, width: int = 40) -> str:
    """The results as a plain-text table for the terminal: reasons in words (see :mod:`gsscreen.plain`)."""
    from gsscreen.plain import plain_flags, plain_problem

    lines = [f"{'photo':<{width}}  {'P(GS)':>6}  {'call':<43}  reasons / notes"]
    for r in table.to_dict("records"):
        name = Path(str(r["file"])).name
        if r.get("face") is not None and r.get("face") == r.get("face"):  # --face all: which face (NaN-safe)
            name = f"{name} #{int(r['face'])}"
        name = name if len(name) <= width else "…" + name[-(width - 1):]
        p = r["p_gs"]
        ptxt = f"{p:6.3f}" if isinstance(p, float) and not math.isnan(p) else "     —"
        said = plain_flags(r.get("flags"))
        prob = plain_problem(r.get("problem"))
        why = [prob[:1].upper() + prob[1:] + "."] if prob and "unreadable" in str(r.get("flags")) else []
        extra = " ".join([*said, *why])
        lines.append(f"{name:<{width}}  {ptxt}  {r['call']:<43}  {extra}")
    return "\n".join(lines)


__all__ = [
    "CALL_GS",
    "CALL_NO",
    "DISCLAIMER",
    "FLAG_TEXT",
    "NO_MODEL",
    "PreparedPhoto",
    "QualityConfig",
    "QualityLimits",
    "ScreenConfig",
    "ScreenResult",
    "ScreeningModel",
    "demo_model_path",
    "expand_inputs",
    "format_table",
    "regions_wanted",
    "resolve_model",
    "screen_batch",
]
