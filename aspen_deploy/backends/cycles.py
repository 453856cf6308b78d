"""Clock cycles a Xylo IMU core needs per time step: Rockpool's cycles model, without samna.

A re-implementation of ``cycles_model`` in Rockpool 3.1.0's
``rockpool/devices/xylo/syns63300/power_cycles_model.py`` (that file imports samna only for
two type aliases), evaluated per window and per time step instead of once per raster. The
tests check it against Rockpool's own function, loaded through
`aspen_deploy.rockpool_compat.rockpool_cycles_module`.

Per step, with p_in = (active input channels) / Nin and p_h = (hidden neurons that spiked) / Nhid
(a count of several events costs the same as one event), the model is::

    cycles = Nin (p_in Nien 3.5 + 1)                               input spikes
           + Nhid (fanout 7 p_h + 3)                               hidden isyn updates
           + Noen p_h (1 + 8 Nout)                                 readout isyn updates
           + Nhid (19 + 2 max(p_h, a^2) + 3 max(p_h a, a^2)        hidden spiking
                      + p_h + a max(p_h, a))
           + 12 Nout                                               readout spiking

Nien: input-expansion neurons that receive a non-zero input weight; Noen: readout rows with
a non-zero weight; fanout: mean number of non-zero hidden->hidden weights per hidden neuron;
a: aliases per hidden neuron (Rockpool's ``is_alias_target_prob`` and
``is_alias_source_prob`` are both #aliases / Nhid). The required clock is
``cycles * margin / dt`` (Rockpool: margin 1.2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from aspen_deploy import chip
from aspen_deploy.config import XyloConfig

INPUT_LOOP_CYCLES = 3.5
HIDDEN_UPDATE_CYCLES = 7.0
OUTPUT_ISYN_UPDATE_CYCLES = 8.0
FIXED_HIDDEN_NEURON_CYCLES = 19.0
FIXED_OUTPUT_NEURON_SPK_CYCLES = 12.0


@dataclass(frozen=True)
class CycleShape:
    """The configuration numbers the cycles model reads."""

    n_in: int
    n_ien_used: int
    n_hid: int
    n_out: int
    n_oen_used: int
    fanout_avg: float
    alias_rate: float

    @classmethod
    def of(cls, cfg: XyloConfig) -> CycleShape:
        w_in = np.asarray(cfg.input_weights)
        w_out = np.asarray(cfg.readout_weights)
        w_rec = np.asarray(cfg.hidden_weights)
        n_hid = cfg.n_hidden
        aliases = cfg.hidden.alias_target or []
        return cls(
            n_in=int(w_in.shape[0]),
            n_ien_used=int(np.count_nonzero(np.any(w_in != 0, axis=0))),
            n_hid=n_hid,
            n_out=int(w_out.shape[1]),
            n_oen_used=int(np.count_nonzero(np.any(w_out != 0, axis=1))),
            fanout_avg=float(np.count_nonzero(w_rec, axis=1).mean()) if n_hid else 0.0,
            alias_rate=sum(a is not None for a in aliases) / n_hid if n_hid else 0.0,
        )


def cycles_from_activity(
    cfg: XyloConfig | CycleShape, input_active: np.ndarray, hidden_active: np.ndarray
) -> np.ndarray:
    """Cycles per step from the number of active input channels and spiking hidden neurons.

    ``input_active``, ``hidden_active``: integer arrays of one shape (e.g. (N, T)); returns
    float64 cycles of that shape (formula in the module docstring).
    """
    s = cfg if isinstance(cfg, CycleShape) else CycleShape.of(cfg)
    ia, ha = np.asarray(input_active), np.asarray(hidden_active)
    if ia.size > 4 * (s.n_in + 1) * (s.n_hid + 1) and ia.dtype.kind in "iu" and ha.dtype.kind in "iu":
        # many steps: look them up in the table of every (inputs, hidden) pair (the same floats)
        if ia.min(initial=0) < 0 or ha.min(initial=0) < 0 or ia.max(initial=0) > s.n_in or ha.max(initial=0) > s.n_hid:
            raise ValueError(f"active counts must lie in 0..{s.n_in} (inputs) and 0..{s.n_hid} (hidden neurons)")
        return cycles_table(s)[ia, ha]
    return _cycles_formula(s, ia, ha)


def cycles_table(s: CycleShape) -> np.ndarray:
    """(n_in + 1, n_hid + 1) float64: the cycles of a step with i active inputs and h spiking hidden
    neurons at [i, h] (the formula evaluated once per pair: the fast backend looks steps up here)."""
    return _cycles_formula(s, np.arange(s.n_in + 1)[:, None], np.arange(s.n_hid + 1)[None, :])


def _cycles_formula(s: CycleShape, input_active: np.ndarray, hidden_active: np.ndarray) -> np.ndarray:
    p_in = np.asarray(input_active, dtype=np.float64) / s.n_in
    p_h = np.asarray(hidden_active, dtype=np.float64) / s.n_hid
    a = s.alias_rate
    input_cycles = s.n_in * (p_in * s.n_ien_used * INPUT_LOOP_CYCLES + 1)
    hidden_isyn = s.n_hid * (s.fanout_avg * HIDDEN_UPDATE_CYCLES * p_h + 3)
    output_isyn = p_h * (1 + s.n_out * OUTPUT_ISYN_UPDATE_CYCLES) * s.n_oen_used  # Rockpool's order
    var_hidden = np.maximum(p_h, a * a) * 2 + np.maximum(p_h * a, a * a) * 3 + p_h * 1 + np.maximum(p_h, a) * a * 1
    hidden_spk = s.n_hid * (FIXED_HIDDEN_NEURON_CYCLES + var_hidden)
    output_spk = s.n_out * FIXED_OUTPUT_NEURON_SPK_CYCLES
    return input_cycles + hidden_isyn + output_isyn + hidden_spk + output_spk


def cycles_per_step(cfg: XyloConfig, input_counts: np.ndarray, hidden_spikes: np.ndarray) -> np.ndarray:
    """Cycles for each step of (N, T, Nin) input counts and (N, T, Nhid) hidden spike counts -> (N, T)."""
    x = np.asarray(input_counts)
    h = np.asarray(hidden_spikes)
    if x.shape[:-1] != h.shape[:-1]:
        raise ValueError(f"input counts {x.shape} and hidden spikes {h.shape} must agree in all but the last axis")
    if x.shape[-1] != cfg.n_inputs or h.shape[-1] != cfg.n_hidden:
        raise ValueError(
            f"expected {cfg.n_inputs} input channels and {cfg.n_hidden} hidden neurons, "
            f"got {x.shape[-1]} and {h.shape[-1]}"
        )
    return cycles_from_activity(cfg, np.count_nonzero(x, axis=-1), np.count_nonzero(h, axis=-1))


class ClockChoice(NamedTuple):
    """``clock_mhz``: lowest chip clock (from `chip.CLOCKS_MHZ`) that keeps up, or None if none does;
    ``required_mhz``: the frequency the worst step needs, ``max(cycles) * margin / dt``."""

    clock_mhz: float | None
    required_mhz: float


def required_clock_mhz(cycles_per_step: np.ndarray, dt: float = chip.DT_S, margin: float = 1.2,
                       axis: int | None = None) -> Any:
    """The clock (MHz) that runs the busiest step in real time: ``max(cycles) * margin / dt``; a
    float, or with ``axis`` an array (one per row of steps)."""
    c = np.asarray(cycles_per_step, dtype=np.float64)
    if c.size == 0:
        raise ValueError("no cycle counts given")
    need = c.max(axis=axis) * margin / dt / 1e6
    return float(need) if axis is None else need


def min_clock_mhz(cycles_per_step: np.ndarray, dt: float = chip.DT_S, margin: float = 1.2) -> ClockChoice:
    """Lowest legal core clock that runs every given step in real time (the worst step decides).

    ``required_mhz = max(cycles) * margin / dt / 1e6``; the chip clock is the smallest of
    `chip.CLOCKS_MHZ` that is at least that.
    """
    if not dt > 0:
        raise ValueError(f"dt must be positive (seconds per step), got {dt}")
    if not margin >= 1.0:
        raise ValueError(f"margin is a factor >= 1 (Rockpool uses 1.2), got {margin}")
    required = required_clock_mhz(cycles_per_step, dt, margin)
    return ClockChoice(lowest_clock(required), required)


def lowest_clock(required_mhz: float, clocks: Sequence[float] = chip.CLOCKS_MHZ) -> float | None:
    """The lowest of ``clocks`` at or above ``required_mhz`` (None when even the top one is too
    slow); the one rule for every clock choice, with `fast_enough`'s slack: a requirement computed
    to land exactly on a clock (10 MHz computes as 10.000000000000002) gets that clock."""
    ok = [c for c in sorted(clocks) if fast_enough(c, required_mhz)]
    return ok[0] if ok else None


def fast_enough(clock_mhz: float, required_mhz: float) -> bool:
    """Whether ``clock_mhz`` meets ``required_mhz`` (1e-9 MHz of slack for float rounding)."""
    return clock_mhz + 1e-9 >= required_mhz
