"""The paper's head: the fully connected layers replaced by convolutions, each conv -> batch norm -> ReLU ->
50% dropout, then a 1×1 convolution to the classes (softmax gives P(GS)).

The penultimate activation (after ReLU, before the last dropout), global-average-pooled and L2-normalised, is the
embedding the triplet loss uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvHead(nn.Module):
    """``(B, C, h, w)`` feature map -> ``(logits (B, num_classes), embedding (B, D))``.

    Args:
        in_channels: channels of the incoming feature map.
        layers: ``[(out_channels, kernel_size), ...]`` for the hidden conv layers (VGG-16: ``[(4096, 7),
            (4096, 1)]``, i.e. fc6 as a 7×7 conv and fc7 as a 1×1 conv).
        num_classes: output classes (2: control, GS).
        dropout: dropout probability after each hidden layer (the paper: 0.5).
    """

    def __init__(self, in_channels: int, layers: list[tuple[int, int]], num_classes: int = 2, dropout: float = 0.5):
        super().__init__()
        if not layers:
            raise ValueError("ConvHead needs at least one hidden layer")
        blocks: list[nn.Module] = []
        c = in_channels
        for i, (out, k) in enumerate(layers):
            blocks += [nn.Conv2d(c, out, k, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if i < len(layers) - 1:
                blocks.append(nn.Dropout(dropout))
            c = out
        # Module indices inside ``hidden`` for layer i: conv 4i, bn 4i+1, relu 4i+2, dropout 4i+3 (not after the
        # last layer). The last dropout sits outside ``hidden`` so that the embedding is the clean activation
        # (dropout noise would inflate triplet distances) while the classifier still trains with dropout.
        self.hidden = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Conv2d(c, num_classes, 1)
        self.embedding_dim = c

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hidden(feats)  # (B, D, h', w'): 1×1 when the feature map matches the first kernel
        logits = self.classifier(self.dropout(h)).mean(dim=(2, 3))
        emb = F.normalize(h.mean(dim=(2, 3)), dim=1)
        return logits, emb
