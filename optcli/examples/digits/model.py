"""Small CNN for scikit-learn's 8x8 handwritten digits, with committed weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

WEIGHTS_PATH: Path = Path(__file__).with_name("weights.pt")
"""Path of the committed ``state_dict`` produced by ``scripts/train_digits.py``."""

NUM_CLASSES: int = 10
"""Number of output classes (digits 0-9)."""


def _conv_block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Return a 3x3 same-padding Conv + BatchNorm + ReLU block."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(),
    )


class DigitsCNN(nn.Module):
    """CNN mapping float32 images ``[B, 1, 8, 8]`` (values in ``[0, 1]``) to logits ``[B, 10]``.

    Layout: Conv(1->32)+BN+ReLU, Conv(32->48)+BN+ReLU, MaxPool -> 4x4,
    Conv(48->64)+BN+ReLU, MaxPool -> 2x2, Flatten, Linear(256->96)+ReLU, Linear(96->10).
    About 68k parameters (weights file under 300 KB). Uses only Conv, BatchNorm, ReLU,
    MaxPool, Flatten and Linear, which export cleanly to ONNX and quantize with onnxruntime.
    """

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        """Build the layers."""
        super().__init__()
        self.features = nn.Sequential(
            _conv_block(1, 32),
            _conv_block(32, 48),
            nn.MaxPool2d(2),  # 8x8 -> 4x4
            _conv_block(48, 64),
            nn.MaxPool2d(2),  # 4x4 -> 2x2
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, 96),
            nn.ReLU(),
            nn.Linear(96, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits for a batch of images."""
        return self.classifier(self.features(x))


def load_model() -> nn.Module:
    """Build :class:`DigitsCNN`, load the committed weights and return it in eval mode."""
    model = DigitsCNN()
    state_dict = torch.load(WEIGHTS_PATH, map_location="cpu", weights_only=True)
    model.load_state_dict(state_dict)
    model.eval()
    return model
