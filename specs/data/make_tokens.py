"""Write tokens.npz for sequence_classifier.nnspec: a small, deterministic token task.

Each of the 2,000 sequences holds T = 12 token ids from a vocabulary of 20. Exactly one token 3
and exactly one token 7 are placed at two random positions; the other positions hold random
tokens other than 3 and 7. The label is 1 when the 3 comes before the 7, else 0 -- an
order-dependent question that a bag of tokens cannot answer but a recurrent layer can.

    x: (2000, 12) int64 token ids in [0, 20)
    y: (2000,)    int64 class ids in {0, 1}

Run from anywhere: ``python specs/data/make_tokens.py``. The output is identical on every run.
"""
from pathlib import Path

import numpy as np

N, T, VOCAB = 2000, 12, 20
FIRST, SECOND = 3, 7


def make(seed: int = 20240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    others = np.array([t for t in range(VOCAB) if t not in (FIRST, SECOND)])
    x = others[rng.integers(0, len(others), size=(N, T))]
    y = np.zeros(N, dtype=np.int64)
    for i in range(N):
        p, q = rng.choice(T, size=2, replace=False)
        x[i, p], x[i, q] = FIRST, SECOND
        y[i] = int(p < q)
    return x.astype(np.int64), y


if __name__ == "__main__":
    x, y = make()
    out = Path(__file__).with_name("tokens.npz")
    np.savez_compressed(out, x=x, y=y)
    print(f"wrote {out}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}, {y.mean():.1%} positive")
