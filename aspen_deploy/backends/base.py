"""The one protocol through which every configured network runs.

Bit-accurate reference (`xylosim`), batched simulator (`fast`), and later the virtual
device and the HDK all implement `Backend`; the sweep and the controller never know which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from aspen_deploy.config import XyloConfig

# Prediction is read from the readout membrane averaged over the last part of the window
# (the float model's logit, see models.aspen_synnet); this is the part that is skipped.
READOUT_SKIP_FRACTION = 0.25


@dataclass
class RunResult:
    """What a backend returns for a batch of N windows of T steps.

    output_spikes: (N, T, Nout) int   readout spikes per step
    readout_vmem:  (N, T, Nout) int   readout membrane per step (read on chip in accelerated mode)
    hidden_spike_counts: (N, Nhid) int  spikes per hidden neuron over the window
    cycles_per_step: (N, T) float     chip clock cycles each step needs (cycles model)
    prediction: (N,) int              argmax of mean readout membrane over the window's last 3/4
    """

    output_spikes: np.ndarray
    readout_vmem: np.ndarray
    hidden_spike_counts: np.ndarray
    cycles_per_step: np.ndarray
    prediction: np.ndarray


def readout_skip_steps(n_steps: int, skip_fraction: float = READOUT_SKIP_FRACTION) -> int:
    """Steps at the start of a window that the prediction ignores (the states are still filling)."""
    return int(n_steps * skip_fraction)


def predict_from_vmem(readout_vmem: np.ndarray, skip_fraction: float = READOUT_SKIP_FRACTION) -> np.ndarray:
    """Class = argmax over outputs of the readout membrane averaged over the last (1 - skip) of T."""
    v = readout_vmem[:, readout_skip_steps(readout_vmem.shape[1], skip_fraction) :, :]
    if np.issubdtype(v.dtype, np.integer):
        return predict_from_sums(np.einsum("ntk->nk", v, dtype=np.int64))  # einsum: 2x faster than sum(axis=1)
    return np.argmax(v.astype(np.float64).mean(axis=1), axis=-1).astype(np.int64)


def predict_from_sums(vmem_sums: np.ndarray) -> np.ndarray:
    """`predict_from_vmem` from integer membranes already summed over the same steps, (N, Nout):
    the sum has the mean's argmax (sums differ by >= 1, their means by >= 1/T, far above
    float64 rounding)."""
    return np.argmax(vmem_sums, axis=-1).astype(np.int64)


NEGATIVE_EVENTS = "input event counts must be >= 0"


def check_events(events: np.ndarray, n_inputs: int, check_sign: bool = True) -> np.ndarray:
    """Validate input event counts and return them as int64 (N, T, Nin); raises ValueError.

    ``check_sign=False`` leaves the test for negative counts to the caller (the fast backend
    does it inside its kernel, saving a pass over the input; same message, `NEGATIVE_EVENTS`).
    """
    x = np.asarray(events)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"input events must have shape (T, {n_inputs}) or (N, T, {n_inputs}), got {x.shape}")
    if x.shape[2] != n_inputs:
        raise ValueError(f"input events have {x.shape[2]} channels; the configuration has {n_inputs} inputs")
    if x.shape[1] == 0 or x.shape[0] == 0:
        raise ValueError("input events are empty (no windows or no time steps)")
    if not np.issubdtype(x.dtype, np.integer):
        if not np.all(np.isfinite(x)) or not np.all(x == np.round(x)):
            raise ValueError("input events must be whole numbers (event counts per step)")
    x = x.astype(np.int64, copy=False)
    if check_sign and x.min() < 0:
        raise ValueError(NEGATIVE_EVENTS)
    return x


@runtime_checkable
class Backend(Protocol):
    """Runs a `XyloConfig` on batches of input event counts."""

    name: str

    def load(self, config: XyloConfig) -> None:
        """Take a configuration (integers already design-rule checked)."""

    def set_threshold_scale(self, scale: float) -> None:
        """Multiply the loaded hidden thresholds by ``scale`` (see `XyloConfig.with_threshold_scale`)."""

    def run(self, events: np.ndarray) -> RunResult:
        """Run (N, T, Nin) event counts (clipped to 0..15 as the chip does), each window from reset state."""
