"""Exhaustive check of the fast backend's division: floor(float32(v) * reciprocal_up(thr)) == v // thr
for every 0 <= v <= 32767 and every threshold 1 <= thr <= 32767 (2**30 pairs, ~10 s on 2 cores).

Also shows why the rounding direction matters: with float32(1 / thr) rounded to nearest the
same floor is wrong for thousands of pairs.

    PYTHONPATH=. python scripts/check_reciprocal.py
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from aspen_deploy.backends.fast import reciprocal_up


@njit(parallel=True)
def count_wrong(rcp: np.ndarray) -> int:
    wrong = 0
    for thr in prange(1, rcp.shape[0]):
        for v in range(32768):
            wrong += np.int64(np.floor(np.float32(v) * rcp[thr])) != v // thr
    return wrong


def main() -> int:
    thr = np.arange(32768)
    thr[0] = 1  # unused slot
    up = count_wrong(reciprocal_up(thr))
    nearest = count_wrong((1.0 / thr).astype(np.float32))
    print(f"pairs with a wrong quotient: reciprocal_up {up}, float32(1/thr) rounded to nearest {nearest}")
    return 0 if up == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
