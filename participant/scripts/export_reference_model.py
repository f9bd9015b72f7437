#!/usr/bin/env python3
"""Exports a reference TorchScript model for the participant's tests and demos.

The module is a small CNN for 1-channel images (no batch norm: a
TrainableCModule federates parameters, not buffers). It is scripted, so the
Rust side loads it with `tch::TrainableCModule` and trains it in place.

    python participant/scripts/export_reference_model.py --out ref.pt \
        --image-size 32 --num-classes 3 --seed 0
"""

import argparse

import torch
from torch import nn


class ReferenceCnn(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((4, 4))
        self.fc1 = nn.Linear(16 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.flatten(self.pool(x), 1)
        return self.fc2(torch.relu(self.fc1(x)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    model = ReferenceCnn(a.channels, a.num_classes)
    scripted = torch.jit.script(model)
    # Fail here, not in Rust, if the module does not produce [N, classes].
    y = scripted(torch.zeros(2, a.channels, a.image_size, a.image_size))
    assert tuple(y.shape) == (2, a.num_classes), y.shape
    scripted.save(a.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {a.out}: {n} parameters, torch {torch.__version__}")


if __name__ == "__main__":
    main()
