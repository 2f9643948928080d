"""Write shapes.npz for resnet_small.nnspec: small CIFAR-shaped images of four kinds of shape.

Each of the 320 images is [3, 32, 32] float32 in [0, 1]: a dark, noisy background and one shape
of a random colour, size and position -- a filled square (class 0), a horizontal bar (1), a
vertical bar (2) or a cross (3). The colour and place say nothing about the class; the form does,
which a convolutional network with a global pooling head learns in a few epochs.

    x: (320, 3, 32, 32) float32
    y: (320,)           int64 class ids in {0, 1, 2, 3}

Run from anywhere: ``python specs/data/make_shapes.py`` (about 4 MB; not committed). The output is
identical on every run.
"""
from pathlib import Path

import numpy as np

N, SIZE, CLASSES = 320, 32, 4


def make(n: int = N, seed: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = (0.15 * rng.random((n, 3, SIZE, SIZE))).astype(np.float32)
    y = np.arange(n, dtype=np.int64) % CLASSES
    rng.shuffle(y)
    for i in range(n):
        colour = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
        s = int(rng.integers(8, 15))                 # the shape's extent
        t = max(2, s // 4)                           # a bar's thickness
        r, c = (int(v) for v in rng.integers(0, SIZE - s, size=2))
        mask = np.zeros((SIZE, SIZE), dtype=bool)
        if y[i] == 0:
            mask[r:r + s, c:c + s] = True
        elif y[i] == 1:
            mask[r + s // 2 - t // 2:r + s // 2 - t // 2 + t, c:c + s] = True
        elif y[i] == 2:
            mask[r:r + s, c + s // 2 - t // 2:c + s // 2 - t // 2 + t] = True
        else:
            mask[r + s // 2 - t // 2:r + s // 2 - t // 2 + t, c:c + s] = True
            mask[r:r + s, c + s // 2 - t // 2:c + s // 2 - t // 2 + t] = True
        x[i][:, mask] = colour[:, None]
    return x, y


def write(path: Path | None = None) -> Path:
    out = path or Path(__file__).with_name("shapes.npz")
    x, y = make()
    np.savez_compressed(out, x=x, y=y)
    return out


if __name__ == "__main__":
    out = write()
    print(f"wrote {out}")
