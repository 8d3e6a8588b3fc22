"""A task whose answer is known: noise images where class 1 carries a red 4×4 blob in the top-left 12×12 corner and
every image two green or blue 4×4 distractor blobs of the same brightness elsewhere. A small CNN trained on it must
look at the red blob, so a heatmap method can be checked against the truth."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def blob_images(n: int, rng: np.random.Generator, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)``: ``(n, 3, size, size)`` float32 images in 0–1 and their ``(n,)`` labels."""
    x = rng.uniform(0.0, 0.35, size=(n, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in range(n):
        for _ in range(2):
            while True:
                r, c = rng.integers(0, size - 4, size=2)
                if r >= 14 or c >= 14:  # keep distractors out of the target region
                    break
            x[i, :, r : r + 4, c : c + 4] = 0.1
            x[i, rng.integers(1, 3), r : r + 4, c : c + 4] = 1.0
        if y[i]:
            r, c = rng.integers(0, 9, size=2)
            x[i, :, r : r + 4, c : c + 4] = 0.1
            x[i, 0, r : r + 4, c : c + 4] = 1.0
    return torch.from_numpy(x), torch.from_numpy(y)


def train_on_blobs(model: nn.Module, rng: np.random.Generator, steps: int = 150) -> torch.Tensor:
    """Train ``model`` (images → 2 logits) with Adam on fresh batches; assert it learned the task (accuracy > 0.95
    on 64 new images) and return that set's class-1 images."""
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        xb, yb = blob_images(32, rng)
        loss = nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = blob_images(64, rng)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.95, f"the planted model did not learn its task (accuracy {acc:.2f})"
    return x[y == 1]
