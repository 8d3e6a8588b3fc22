"""Inputs of the fold loop: aligned crops in memory, the frozen body part, and its cached outputs.

Why a cache: in the CPU-friendly default the first ``k`` modules of ``GSNet.body`` never train, so their output
for a given input is the same in every epoch and every fold. It is computed once per photo — for the plain crop,
its mirror (flip test-time augmentation) and ``n_views`` augmented views — stored as float16 ``.npy`` memmaps in
the run folder, and reused by all folds (and by a resumed run). Training then samples one of the views per photo
and epoch and runs only ``body[k:]`` + head.

Augmented views are drawn from a per-photo seed (``seed``, photo key, view), so the cache does not depend on batch
composition and a half-built cache (a killed run) is completed, not rebuilt, by the next run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gsscreen.training.augment import Augmenter
from gsscreen.training.config import AugmentConfig
from gsscreen.training.run_folder import atomic_write_text

F16_MAX = 65504.0


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any hashable description, e.g. ``derive_seed(seed, "fold", 2, "epoch", 5)``."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _bytes_key(data: bytes) -> str:
    """Content key of a crop file: sha1 of its bytes (the feature cache's row key)."""
    return hashlib.sha1(data).hexdigest()


def load_crops(
    paths: Sequence[str | Path], size: int, progress: Callable[[int], None] | None = None,
    keys: list[str] | None = None,
) -> tuple[torch.Tensor, list[int], list[tuple[str, str]]]:
    """Read images as RGB, resize to ``size × size`` (antialiased) and stack them.

    Returns ``(crops (N_ok, 3, size, size) uint8, ok_indices, failures [(path, problem)])``; a file that cannot
    be read is a failure, never a crash. With ``keys`` (a list), the content key (sha1 of the bytes: the feature cache's
    row key) of each readable file is appended to it, computed from the same bytes (each file is read once).
    """
    import io

    from PIL import Image, UnidentifiedImageError

    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    ok: list[int] = []
    failures: list[tuple[str, str]] = []
    for i, p in enumerate(paths):
        try:
            data = Path(p).read_bytes()
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                if im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
                arr = np.asarray(im, dtype=np.uint8)
            out[len(ok)] = torch.from_numpy(arr.copy()).permute(2, 0, 1)
            ok.append(i)
            if keys is not None:
                keys.append(_bytes_key(data))
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            from gsscreen.errors import describe_image_error, describe_os_error

            # A file-system error names the file (errno set); anything else is the image data itself.
            fs = isinstance(exc, OSError) and exc.errno is not None and not isinstance(exc, UnidentifiedImageError)
            plain = describe_os_error(exc).removeprefix(f"{p}: ") if fs else describe_image_error(exc)
            failures.append((str(p), f"cannot read image: {plain}"))
        if progress is not None:
            progress(1)
    return out[: len(ok)].clone(), ok, failures


def to_float(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 ``(B, 3, H, W)`` -> float32 0–1 on ``device``."""
    return x.to(device=device, non_blocking=True).float().div_(255.0)


@dataclass
class CacheSpec:
    """What a feature cache holds; two caches with equal specs are interchangeable."""

    backbone: str
    pretrained_loaded: bool
    frozen_prefix: int
    image_size: int
    n_views: int
    tta_flip: bool
    seed: int
    augment: dict[str, Any]
    feat_shape: tuple[int, ...]
    keys_sha: str

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["feat_shape"] = list(self.feat_shape)
        return d


class FeatureCache:
    """float16 memmaps of ``body[:k]`` outputs for a list of photos (rows in the order of ``keys``).

    Files in ``folder``: ``meta.json`` (the :class:`CacheSpec`), ``keys.txt`` (row -> photo key), ``plain.npy``
    ``(N, P, *feat_shape)`` with P = 1 (+1 for the mirror when ``tta_flip``), ``views.npy`` ``(N, n_views,
    *feat_shape)`` (absent when ``n_views == 0``), ``done.npy`` ``(N,)`` bool (rows finished; written atomically
    after every chunk).
    """

    def __init__(self, folder: Path, spec: CacheSpec, keys: list[str]) -> None:
        self.folder = Path(folder)
        self.spec = spec
        self.keys = keys
        n = len(keys)
        self.n_plain = 2 if spec.tta_flip else 1
        meta_path = self.folder / "meta.json"
        fresh = True
        if meta_path.is_file():
            try:
                fresh = json.loads(meta_path.read_text()) != spec.to_json()
            except json.JSONDecodeError:
                fresh = True
        self.folder.mkdir(parents=True, exist_ok=True)
        shape_p = (n, self.n_plain, *spec.feat_shape)
        shape_v = (n, spec.n_views, *spec.feat_shape)
        if fresh:
            for f in self.folder.glob("*"):
                f.unlink()
            self.plain = np.lib.format.open_memmap(self.folder / "plain.npy", "w+", np.float16, shape_p)
            self.views = (
                np.lib.format.open_memmap(self.folder / "views.npy", "w+", np.float16, shape_v)
                if spec.n_views
                else None
            )
            self.done = np.zeros(n, dtype=bool)
            self._save_done()
            (self.folder / "keys.txt").write_text("\n".join(keys) + "\n")
            atomic_write_text(meta_path, json.dumps(spec.to_json(), indent=1))
        else:
            self.plain = np.load(self.folder / "plain.npy", mmap_mode="r+")
            self.views = np.load(self.folder / "views.npy", mmap_mode="r+") if spec.n_views else None
            self.done = np.load(self.folder / "done.npy")

    def _save_done(self) -> None:
        tmp = self.folder / "done.tmp.npy"
        np.save(tmp, self.done)
        os.replace(tmp, self.folder / "done.npy")

    @property
    def complete(self) -> bool:
        return bool(self.done.all())

    def build(
        self,
        prefix: nn.Module,
        crops: torch.Tensor,
        augment_cfg: AugmentConfig,
        device: torch.device,
        batch_size: int = 32,
        autocast: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Fill the rows not done yet: ``prefix`` (eval mode, no grad) on plain, mirrored and augmented crops.

        ``crops`` ``(N, 3, S, S)`` uint8 in the order of ``keys``.
        """
        if len(crops) != len(self.keys):
            raise ValueError(f"cache {self.folder}: {len(crops)} crops for {len(self.keys)} keys")
        prefix.eval()
        aug = Augmenter(augment_cfg)
        todo = np.flatnonzero(~self.done)
        with torch.inference_mode():
            for start in range(0, len(todo), batch_size):
                rows = todo[start : start + batch_size]
                x = to_float(crops[torch.from_numpy(rows)], device)

                def run(inp: torch.Tensor) -> np.ndarray:
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                        f = prefix(inp)
                    return f.float().clamp_(-F16_MAX, F16_MAX).cpu().numpy().astype(np.float16)

                self.plain[rows, 0] = run(x)
                if self.spec.tta_flip:
                    self.plain[rows, 1] = run(torch.flip(x, dims=[3]))
                for v in range(self.spec.n_views):
                    seeds = [derive_seed(self.spec.seed, "view", self.keys[r], v) for r in rows]
                    self.views[rows, v] = run(aug.per_item(x, seeds))  # type: ignore[index]
                self.plain.flush()
                if self.views is not None:
                    self.views.flush()
                self.done[rows] = True
                self._save_done()
                if progress is not None:
                    progress(len(rows))

    def train_batch(self, rows: np.ndarray, views: np.ndarray) -> torch.Tensor:
        """float32 features ``(B, *feat_shape)``: view 0 = the plain crop, view ``v >= 1`` = augmented view v-1."""
        out = np.empty((len(rows), *self.spec.feat_shape), dtype=np.float32)
        plain = views == 0
        if plain.any():
            out[plain] = self.plain[rows[plain], 0]
        if (~plain).any():
            assert self.views is not None
            out[~plain] = self.views[rows[~plain], views[~plain] - 1]
        return torch.from_numpy(out)

    def eval_batch(self, rows: np.ndarray) -> list[torch.Tensor]:
        """``[plain]`` or ``[plain, mirror]`` float32 features ``(B, *feat_shape)`` for evaluation."""
        return [torch.from_numpy(np.asarray(self.plain[rows, j], dtype=np.float32)) for j in range(self.n_plain)]


class ImageSource:
    """Training/evaluation inputs straight from the crops (no cache): augmentation runs per batch, on device."""

    def __init__(self, crops: torch.Tensor, augment_cfg: AugmentConfig, tta_flip: bool, device: torch.device):
        self.crops = crops
        self.aug = Augmenter(augment_cfg)
        self.tta_flip = tta_flip
        self.device = device

    def train_batch(self, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        x = to_float(self.crops[torch.from_numpy(rows)], self.device)
        return self.aug(x, generator)

    def eval_batch(self, rows: np.ndarray) -> list[torch.Tensor]:
        x = to_float(self.crops[torch.from_numpy(rows)], self.device)
        return [x, torch.flip(x, dims=[3])] if self.tta_flip else [x]


class CacheSource:
    """Adapter giving :class:`FeatureCache` the same interface as :class:`ImageSource`.

    ``n_views`` training views per photo besides the plain one; a training batch samples, per photo, view 0
    (plain) or one of the augmented views, drawn from the caller's ``torch.Generator`` (seeded from (seed, fold,
    epoch) by the fold loop).
    """

    def __init__(self, cache: FeatureCache, use_views: bool = True) -> None:
        self.cache = cache
        self.n_choices = 1 + (cache.spec.n_views if use_views else 0)

    def train_batch(self, rows: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        views = torch.randint(0, self.n_choices, (len(rows),), generator=generator).numpy()
        return self.cache.train_batch(rows, views)

    def eval_batch(self, rows: np.ndarray) -> list[torch.Tensor]:
        return self.cache.eval_batch(rows)


def keys_digest(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
