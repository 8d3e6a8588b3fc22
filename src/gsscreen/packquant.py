"""Compact storage of a pack's trained tensors: int8 deltas from the weights the network was built from.

Fine-tuning the last FaceNet stages stores 2.5 M body parameters per fold (≈ 53 MB for five folds in float32). The
trained values stay close to the installed pretrained weights the fine-tuning started from, and the pack rebuilds
those at load time anyway (``frozen_source == "offline"``). Scheme ``qdelta8`` therefore stores, for every trained
floating-point tensor with two or more dimensions:

``fold{i}.{name}#int8``
    int8 codes ``q`` of the tensor's shape, in ``[-L, L]`` (``L`` = ``levels``, recorded in ``model.json``);
``fold{i}.{name}#scale``
    float32 scales ``s``, one per output row (first dimension);

and rebuilds ``W = R + q · s`` (row-wise), where the reference ``R`` is the freshly built network's tensor for body
tensors (the installed pretrained weights; for a random-init backbone its seeded initialisation) and zero for the
classifier head (its initial values carry no information worth depending on). Each row's error is at most half a
step, ``s / 2 = max|W − R| / (2L)``. One-dimensional tensors (biases, BatchNorm) and integer tensors are kept as
they are (float32); they are a few kilobytes.

``model.json`` records the scheme under ``quantisation``: ``{"scheme", "levels", "per", "delta_from_base"
(the tensor names with a non-zero reference), "base_sha256"}``. ``base_sha256`` is
:func:`gsscreen.modelpack.tensors_fingerprint` of those reference tensors: a machine whose installed weights differ
would rebuild different weights from the same codes, so loading refuses the pack with a clear error instead.

int8 codes deflate well (most deltas are small), so the zip member is compressed (see
:func:`gsscreen.packsign.write_pack_members`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SCHEME = "qdelta8"
CODES = "#int8"
SCALE = "#scale"
#: default code range ±31 (6 bits of levels in int8 storage): measured on the fine-tuned demo model, the five
#: folds' deltas deflate to ≈ 8.6 MB (±63: 9.9 MB) with a largest relative weight error of 0.77 %.
DEFAULT_LEVELS = 31


def uses_base(name: str) -> bool:
    """Whether a trained tensor is stored relative to the freshly built network (body) or to zero (head)."""
    return name.startswith("body.")


def quantise_rows(delta: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes int8 of delta's shape, scales float32 (rows,))`` with ``delta ≈ codes · scale`` row-wise.

    A row of zeros gets scale 1 and zero codes (exact)."""
    import torch

    if not 1 <= levels <= 127:
        raise ValueError(f"levels must be in 1..127, got {levels}")
    m = delta.detach().to(torch.float32).reshape(delta.shape[0], -1)
    amax = m.abs().amax(dim=1)
    scale = torch.where(amax > 0, amax / levels, torch.ones_like(amax))
    codes = torch.round(m / scale[:, None]).clamp_(-levels, levels).to(torch.int8)
    return codes.reshape(delta.shape).contiguous(), scale.contiguous()


def dequantise_rows(codes: torch.Tensor, scale: torch.Tensor, ref: torch.Tensor | None) -> torch.Tensor:
    """``ref + codes · scale`` (row-wise), float32; ``ref`` None means zero."""
    import torch

    shape = (-1,) + (1,) * (codes.ndim - 1)
    w = codes.to(torch.float32) * scale.to(torch.float32).reshape(shape)
    return (w + ref.to(torch.float32) if ref is not None else w).contiguous()


def quantise_tensors(tensors: dict[str, torch.Tensor], base: dict[str, torch.Tensor],
                     levels: int) -> dict[str, torch.Tensor]:
    """One fold's trained tensors → stored tensors (``name#int8`` + ``name#scale``, or ``name`` as it is).

    ``base``: the freshly built network's state (the references of :func:`uses_base` tensors)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        if v.is_floating_point() and v.ndim >= 2:
            ref = base[k] if uses_base(k) else None
            delta = v.float() - ref.float() if ref is not None else v.float()
            out[k + CODES], out[k + SCALE] = quantise_rows(delta, levels)
        else:
            out[k] = v.float().contiguous() if v.is_floating_point() else v.contiguous()
    return out


def quantisation_info(trained: dict[str, torch.Tensor], base: dict[str, torch.Tensor], levels: int) -> dict[str, Any]:
    """``model.json``'s ``quantisation`` record for one fold's trained tensors (all folds hold the same names)."""
    from gsscreen.modelpack import tensors_fingerprint

    keys = sorted(k for k, v in trained.items() if v.is_floating_point() and v.ndim >= 2 and uses_base(k))
    return {"scheme": SCHEME, "levels": int(levels), "per": "output row (first dimension)",
            "delta_from_base": keys, "base_sha256": tensors_fingerprint({k: base[k] for k in keys})}


def split_name(key: str) -> tuple[str, str]:
    """``"body.7.conv.weight#int8"`` → ``("body.7.conv.weight", "#int8")``; plain names get ``""``."""
    name, sep, part = key.partition("#")
    return name, sep + part


def restore_fold(parts: dict[str, dict[str, torch.Tensor]], base: dict[str, torch.Tensor], q: dict[str, Any],
                 where: str) -> dict[str, torch.Tensor]:
    """One fold's float tensors from its stored parts (``{name: {"": t} or {"#int8": q, "#scale": s}}``).

    ``base``: the freshly built network's state; ``q``: the ``quantisation`` record. Raises
    :class:`gsscreen.modelpack.ModelPackError` (prefixed with ``where``) for a missing half, a wrong dtype or a
    scale of the wrong length."""
    import torch

    from gsscreen.modelpack import ModelPackError

    from_base = set(q.get("delta_from_base") or [])
    out: dict[str, torch.Tensor] = {}
    for name, p in parts.items():
        if set(p) == {""}:
            out[name] = p[""]
            continue
        if set(p) != {CODES, SCALE}:
            raise ModelPackError(f"{where}: tensor {name} needs exactly {name}{CODES} and {name}{SCALE}, found "
                                 f"{sorted(name + s for s in p)}")
        codes, scale = p[CODES], p[SCALE]
        if codes.dtype != torch.int8:
            raise ModelPackError(f"{where}: {name}{CODES} must be int8, found {codes.dtype}")
        if not scale.is_floating_point() or tuple(scale.shape) != (codes.shape[0],):
            raise ModelPackError(f"{where}: {name}{SCALE} must be float of shape ({codes.shape[0]},), found "
                                 f"{scale.dtype} {tuple(scale.shape)}")
        if uses_base(name) != (name in from_base):
            raise ModelPackError(f"{where}: tensor {name} is not listed consistently in model.json's "
                                 "quantisation.delta_from_base")
        out[name] = dequantise_rows(codes, scale, base[name] if name in from_base else None)
    return out


__all__ = ["CODES", "DEFAULT_LEVELS", "SCALE", "SCHEME", "dequantise_rows", "quantisation_info",
           "quantise_rows", "quantise_tensors", "restore_fold", "split_name", "uses_base"]
