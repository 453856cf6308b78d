"""Random valid `XyloConfig`s and input event counts, for comparing backends element by element.

Sizes stay within the chip limits of `aspen_deploy.chip` but small, so that xylosim (one
sample at a time) stays quick. Each configuration draws a "regime" so that the corner cases
of the integer semantics are all exercised: gentle networks that spike a little, extreme
ones that saturate the 16-bit states, thresholds that are tiny, zero, negative or huge,
biases with ``bias_enable`` on and off, recurrent weights, and aliases (including alias 0).
"""

from __future__ import annotations

import numpy as np

from aspen_deploy import chip
from aspen_deploy.config import NeuronParams, XyloConfig

REGIMES = ("gentle", "busy", "extreme")


def _weights(rng: np.random.Generator, shape: tuple[int, int], density: float, scale: int) -> np.ndarray:
    w = rng.integers(-scale, scale + 1, size=shape)
    if rng.random() < 0.15:  # the int8 extremes
        w = np.where(rng.random(shape) < 0.5, chip.WEIGHT_MIN, chip.WEIGHT_MAX)
    mask = rng.random(shape) < density
    return np.clip(w * mask, chip.WEIGHT_MIN, chip.WEIGHT_MAX).astype(np.int64)


def _thresholds(rng: np.random.Generator, n: int, typical: int) -> np.ndarray:
    """Mostly ``typical``-sized thresholds, with tiny, zero/negative and huge ones mixed in."""
    kind = rng.choice(4, size=n, p=[0.7, 0.12, 0.08, 0.1])
    thr = np.where(
        kind == 0,
        rng.integers(max(1, typical // 4), typical * 2 + 2, size=n),
        np.where(
            kind == 1,
            rng.integers(1, 4, size=n),
            np.where(
                kind == 2,
                rng.integers(chip.THRESHOLD_MIN, 1, size=n),
                rng.integers(8000, chip.THRESHOLD_MAX + 1, size=n),
            ),
        ),
    )
    return thr.astype(np.int64)


def _neurons(
    rng: np.random.Generator, n: int, typical_thr: int, regime: str, with_alias: bool, n_hidden: int
) -> NeuronParams:
    bias_scale = {"gentle": 50, "busy": 500, "extreme": chip.BIAS_MAX}[regime]
    bias = rng.integers(-bias_scale, bias_scale + 1, size=n) * (rng.random(n) < 0.5)
    aliases: list[int | None] | None = None
    if with_alias:
        aliases = [None] * n
        if rng.random() < 0.3:
            for i in rng.choice(n, size=rng.integers(1, max(2, n // 4) + 1), replace=True):
                aliases[int(i)] = int(0 if rng.random() < 0.3 else rng.integers(0, n_hidden))
    return NeuronParams(
        threshold=_thresholds(rng, n, typical_thr),
        v_mem_decay=rng.integers(chip.DASH_MIN, chip.DASH_MAX + 1, size=n).astype(np.int64),
        i_syn_decay=rng.integers(chip.DASH_MIN, chip.DASH_MAX + 1, size=n).astype(np.int64),
        v_mem_bias=np.clip(bias, chip.BIAS_MIN, chip.BIAS_MAX).astype(np.int64),
        alias_target=aliases,
    )


def random_config(
    rng: np.random.Generator, max_inputs: int = 8, max_hidden: int = 24, max_outputs: int = 6, regime: str | None = None
) -> XyloConfig:
    """One random configuration that satisfies the chip limits (int8 weights, int16 registers, ...)."""
    regime = regime or str(rng.choice(REGIMES, p=[0.45, 0.35, 0.2]))
    n_in = int(rng.integers(1, min(max_inputs, chip.MAX_INPUTS) + 1))
    n_hid = int(rng.integers(1, min(max_hidden, chip.MAX_HIDDEN) + 1))
    n_out = int(rng.integers(1, min(max_outputs, chip.MAX_OUTPUTS) + 1))
    n_ien = int(rng.integers(1, min(n_hid, chip.MAX_INPUT_EXPANSION) + 1))
    n_oen = int(rng.integers(1, min(n_hid, chip.MAX_OUTPUT_EXPANSION) + 1))
    scale = {"gentle": 40, "busy": 127, "extreme": 127}[regime]
    density = float(rng.choice([0.15, 0.5, 1.0]))
    w_rec = _weights(rng, (n_hid, n_hid), density, scale)
    if rng.random() < 0.3:  # feed-forward only (strictly upper triangular, like layered nets)
        w_rec = np.triu(w_rec, 1)
    if rng.random() < 0.15:
        w_rec[:] = 0
    shift_hi = {"gentle": 3, "busy": 6, "extreme": chip.WEIGHT_SHIFT_MAX}[regime]
    typical_thr = {"gentle": 300, "busy": 2000, "extreme": 8000}[regime]
    return XyloConfig(
        input_weights=_weights(rng, (n_in, n_ien), density, scale),
        input_shift=int(rng.integers(0, shift_hi + 1)),
        hidden_weights=w_rec,
        hidden_shift=int(rng.integers(0, shift_hi + 1)),
        hidden=_neurons(rng, n_hid, typical_thr, regime, True, n_hid),
        readout_weights=_weights(rng, (n_oen, n_out), density, scale),
        readout_shift=int(rng.integers(0, shift_hi + 1)),
        readout=_neurons(rng, n_out, typical_thr, regime, False, n_hid),
        bias_enable=bool(rng.random() < 0.5),
        metadata={"regime": regime},
    )


def random_events(rng: np.random.Generator, n_inputs: int, n: int, t: int, over_15: bool = True) -> np.ndarray:
    """(n, t, n_inputs) event counts: sparse 0..15, with some counts above 15 (the chip clips them)."""
    rate = float(rng.choice([0.05, 0.3, 0.8]))
    x = rng.integers(0, chip.MAX_INPUT_COUNT + 1, size=(n, t, n_inputs)) * (rng.random((n, t, n_inputs)) < rate)
    if over_15:
        over = rng.random((n, t, n_inputs)) < 0.03
        x = np.where(over, rng.integers(16, 300, size=x.shape), x)
    return x.astype(np.int64)
