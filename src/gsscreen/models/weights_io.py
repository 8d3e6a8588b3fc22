"""Safe reading and writing of weight files.

Weights are only ever read from safetensors files or with ``torch.load(weights_only=True)``: a weight file is data,
and unpickling arbitrary objects from a file a user found on the internet could run code. A pickled whole model
(``torch.save(model)``) is therefore refused with a message that says how to turn it into a state dict.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from gsscreen.errors import GsscreenError


class WeightsError(GsscreenError, ValueError):
    """A weight file cannot be used: wrong format, unsafe content, or unexpected layout. The message names the file."""


CONVERT_HINT = (
    "If this file holds a whole pickled model (torch.save(model)), convert it once, in a Python session you trust, "
    "to a plain state dict: `import torch; m = torch.load(FILE, weights_only=False); "
    "torch.save(m.state_dict(), 'weights.pth')` and import that file instead."
)


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` mapping from a ``.safetensors`` file or a PyTorch state-dict file.

    PyTorch files are read with ``torch.load(weights_only=True, map_location="cpu")``; a checkpoint dict that wraps
    the weights under ``"state_dict"`` or ``"model"`` is unwrapped. Raises :class:`WeightsError` (naming the file)
    for a pickled whole model, a non-tensor payload, or an unreadable file; ``FileNotFoundError`` if it is missing.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weight file not found: {p}")
    if p.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as exc:  # safetensors raises its own error types for corrupt headers
            raise WeightsError(f"{p}: not a readable safetensors file ({exc})") from exc
    try:
        obj: Any = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only=True refuses any pickled class other than tensors and plain containers: that is exactly
        # the case of a whole pickled nn.Module.
        raise WeightsError(
            f"{p}: refused to load: the file contains pickled Python objects, not just tensors "
            f"(loading it would execute code from the file). {CONVERT_HINT}"
        ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise WeightsError(f"{p}: not a readable PyTorch weight file ({exc})") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{p}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{p}: expected only tensors in the state dict; non-tensor entries: {', '.join(bad[:5])}")
    return {str(k): v for k, v in obj.items()}


class _LazyTensors(Mapping[str, torch.Tensor]):
    """Read-only mapping over an open safetensors file; each tensor is read when asked for (so loading a 500 MB
    file into a model never holds a second full copy in memory)."""

    def __init__(self, handle: Any, path: Path) -> None:
        self._h, self._path, self._keys = handle, path, list(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(f"{self._path}: no tensor named {key!r}")
        return self._h.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


@contextmanager
def open_safetensors(path: str | Path) -> Iterator[Mapping[str, torch.Tensor]]:
    """``with open_safetensors(p) as t: t["name"]``: lazy, tensor-by-tensor reading of a safetensors file."""
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"weight file not found: {p}")
    try:
        handle = safe_open(str(p), framework="pt", device="cpu")
    except Exception as exc:
        raise WeightsError(f"{p}: not a readable safetensors file ({exc})") from exc
    with handle as h:
        yield _LazyTensors(h, p)


def save_safetensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, meta: Mapping[str, Any] | None = None
) -> None:
    """Write ``tensors`` (made contiguous, on CPU) to ``path`` atomically, plus ``path.with_suffix('.json')`` = meta.

    The file is written to a temporary name in the same folder and renamed, so a crash or a concurrent reader never
    sees half a file.
    """
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        save_file(data, tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; weights are not secret and other tools may read them
        os.replace(tmp, p)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if meta is not None:
        p.with_suffix(".json").write_text(json.dumps(dict(meta), indent=2, sort_keys=True) + "\n", encoding="utf-8")
