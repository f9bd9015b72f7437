#!/usr/bin/env python3
"""Exports scikit-learn's bundled handwritten digits (1,797 8x8 images, 10
classes; shipped inside the scikit-learn wheel, no download) as image-folder
datasets split non-IID across participants.

Each site gets `train/<digit>/*.png` and a shared, balanced `test/` split.
Training images are dealt with a per-site skew: site i favours digits
{2i, 2i+1} (mod 10) with --share of its images.

    python participant/scripts/export_digits.py --out data/digits --sites 3
"""

import argparse
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def save(path: str, img8: np.ndarray, size: int) -> None:
    # 0..16 counts → 0..255 gray, upscaled so the CNN's pooling has room.
    a = np.clip(img8 * (255.0 / 16.0), 0, 255).astype(np.uint8)
    Image.fromarray(a, mode="L").resize((size, size), Image.NEAREST).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", required=True)
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--size", type=int, default=16)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--share", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    rng = np.random.default_rng(a.seed)
    d = load_digits()
    idx = rng.permutation(len(d.target))
    n_test = int(len(idx) * a.test_fraction)
    test, train = idx[:n_test], idx[n_test:]

    # Deal training images: favoured digits go to their site with
    # probability `share`, everything else uniformly.
    owner = np.empty(len(train), dtype=int)
    for k, i in enumerate(train):
        label = int(d.target[i])
        fav = (label // 2) % a.sites
        owner[k] = fav if rng.random() < a.share else rng.integers(a.sites)

    for s in range(a.sites):
        site = os.path.join(a.out, f"site-{s}")
        for split, items in (("train", train[owner == s]), ("test", test)):
            for c in range(10):
                os.makedirs(os.path.join(site, split, str(c)), exist_ok=True)
            for i in items:
                label = int(d.target[i])
                save(os.path.join(site, split, str(label), f"{i:04d}.png"), d.images[i], a.size)
        counts = np.bincount(d.target[train[owner == s]], minlength=10)
        print(f"site-{s}: train per digit {counts.tolist()}, test {len(test)}")


if __name__ == "__main__":
    main()
