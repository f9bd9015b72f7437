#!/usr/bin/env python3
"""The PyTorch eager side of `fedsky-participant bench`.

Builds the participant's small CNN in PyTorch with the same parameter names,
loads the same initial weights and batches (safetensors files written by the
Rust side), trains with the same SGD, seed and thread count, and prints one
JSON line: per-step losses and timed step durations.
"""

import argparse
import json
import struct
import time

import numpy as np
import torch
from torch import nn

DTYPES = {"F32": np.float32, "I64": np.int64, "F16": np.float16}


def read_safetensors(path: str) -> dict:
    # The format is an 8-byte little-endian header length, a JSON header and
    # the raw data; reading it here avoids another dependency.
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        a = np.frombuffer(raw[base + begin : base + end], dtype=DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(a.copy().reshape(info["shape"]))
    return out


class SmallCnn(nn.Module):
    """fedsky_participant::model's small CNN, layer for layer."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = nn.functional.adaptive_avg_pool2d(torch.relu(self.conv3(x)), (4, 4))
        x = torch.relu(self.fc1(torch.flatten(x, 1)))
        x = torch.dropout(x, 0.25, self.training)
        return self.fc2(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--init", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch-size", type=int, required=True)
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--num-classes", type=int, default=3)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    init = read_safetensors(a.init)
    data = read_safetensors(a.data)
    model = SmallCnn(data["x"].shape[1], a.num_classes)
    missing = model.load_state_dict(init, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys, missing
    model.to(device).train()
    xs, ys = data["x"].to(device), data["y"].to(device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
    torch.manual_seed(a.seed)
    losses, steps = [], []
    b = a.batch_size
    for step in range(a.warmup + a.steps):
        x, y = xs[step * b : (step + 1) * b], ys[step * b : (step + 1) * b]
        t0 = time.perf_counter()
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = float(loss.item())
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= a.warmup:
            steps.append(time.perf_counter() - t0)
        losses.append(value)
    print(json.dumps({
        "implementation": "PyTorch eager",
        "device": a.device,
        "version": f"torch {torch.__version__}",
        "losses": losses,
        "step_seconds": steps,
        "batch_size": b,
    }))


if __name__ == "__main__":
    main()
