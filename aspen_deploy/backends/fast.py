"""`FastBackend`: a batched, bit-exact simulator of the Xylo IMU SNN core.

Semantics (checked element by element against xylosim 0.1.3 through Rockpool's ``XyloSim``
by ``tests/test_fast_exact.py``; ``sat`` clips to int16, ``wrap`` wraps to int16):

Each step t, in this order:

1. Delivery. Every hidden neuron's ``isyn`` receives, one event at a time with a saturating
   add, ``wrap(w << shift)`` for each input event (input channels in ascending order, counts
   clipped to 15; input weights reach the first Nien hidden neurons), then for each spike of
   each hidden neuron at step t-1 (ascending pre-synaptic index, at most 31 spikes). Readout
   neurons receive the step t-1 spikes of the last Noen hidden neurons the same way. Equal-sign
   repeats collapse exactly: ``k`` saturating adds of ``w`` equal ``sat(isyn + k w)``.
2. Synaptic decay: ``isyn -= decay(isyn, dash_syn)`` with
   ``decay(v, d) = v >> d`` (arithmetic), but ``+1`` when that is 0 and ``v > 0``:
   so d = 0 zeroes the state, and a state smaller than 2**d moves one step towards 0.
3. Membrane: ``dv = wrap(-decay(vmem, dash_mem))``; ``dv = sat(dv + isyn)``; if bias is
   enabled ``dv = sat(dv + bias)``; ``vmem = sat(vmem + dv)``.
4. Spikes, hidden neurons in ascending index order: starting from the count ``n`` that alias
   sources have already given this neuron in this step, ``while vmem >= thr and n < 31:
   n += 1; vmem = wrap(vmem - thr)`` (thr > 0: ``k = min(vmem // thr, 31 - n)`` at once; a
   threshold <= 0 spikes up to the cap). A neuron with an alias target then adds its total
   ``n`` to the target's count, capped at 31; a target with a lower index has already spiked,
   one with a higher index starts from that count. The recorded hidden spikes, and what is
   delivered at t+1, are these counts.
5. Readout neurons: the same with at most 1 spike and no aliases. ``readout_vmem`` is the
   membrane after the spike's subtraction.

Latency follows: input -> hidden in the same step, hidden -> hidden and hidden -> readout one
step later.

Implementation choice (measured on the 2-core development machine, demo network 15-144-6,
256 windows x 512 steps, see ``scripts/bench_sim.py``): a numpy/torch batch loop over time
needs a dense (256 x 144) @ (144 x 144) product per step plus a second one for the
saturation bound, about 0.1 ms each with BLAS, and ~30 elementwise passes: about 50x
xylosim at best. The arithmetic is small and sparse (5-20 % of hidden neurons spike), so this
module compiles the event-driven loop with numba (``parallel=True`` over windows,
``cache=True``): per window and step it adds only the weight rows of inputs and neurons that
are active, into a positive and a negative accumulator. When ``isyn`` plus the negative sum
and ``isyn`` plus the positive sum both stay inside int16, no order of the saturating adds can
saturate and the plain sum is exact; otherwise (rare) that one neuron is recomputed
event by event in chip order. The code is a literal statement of the rules above, which is
what makes it exact; numba makes it fast.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import RunResult, check_events, predict_from_vmem
from aspen_deploy.backends.cycles import CycleShape, cycles_from_activity
from aspen_deploy.config import XyloConfig

try:  # numba is a core dependency; the message says what to do if it is missing
    import numba
    from numba import njit, prange
except ImportError as e:  # pragma: no cover - exercised only without numba
    raise ImportError("the fast backend needs numba: pip install numba (or use backend 'xylosim')") from e

S16_MIN, S16_MAX = chip.STATE_MIN, chip.STATE_MAX


def wrap16(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int16 (what a C++ conversion to ``int16_t`` does)."""
    return ((np.asarray(v, dtype=np.int64) - S16_MIN) % 65536 + S16_MIN).astype(np.int64)


@dataclass(frozen=True)
class FastParams:
    """The integers of one configuration, laid out for the kernel (all int32 / int64 arrays).

    ``w_*``: effective weights ``wrap16(w << shift)``; ``*_pos`` / ``*_neg`` their positive
    and negative parts (for the saturation bound). ``w_in`` is (Nin, Nien), ``w_rec``
    (Nhid, Nhid) [pre, post], ``w_out`` (Noen, Nout) for hidden neurons Nhid-Noen .. Nhid-1.
    ``alias``: target index or -1.
    """

    w_in: np.ndarray
    w_rec: np.ndarray
    w_out: np.ndarray
    thr: np.ndarray
    dash_mem: np.ndarray
    dash_syn: np.ndarray
    bias: np.ndarray
    alias: np.ndarray
    thr_out: np.ndarray
    dash_mem_out: np.ndarray
    dash_syn_out: np.ndarray
    bias_out: np.ndarray
    has_bias: bool
    cycle_shape: CycleShape


class FastConfigError(ValueError):
    """A configuration value that the core's registers cannot hold (run the design-rule checker)."""


def _check_range(name: str, v: np.ndarray, lo: int, hi: int) -> None:
    v = np.asarray(v)
    if v.size and (v.min() < lo or v.max() > hi):
        raise FastConfigError(f"{name} must lie in {lo}..{hi}, found {v.min()}..{v.max()}; run `aspen check` on the config")


def prepare(cfg: XyloConfig) -> FastParams:
    """Effective integer arrays for the kernel; raises `FastConfigError` for out-of-register values."""
    for name, w in (("input.weights", cfg.input_weights), ("hidden.weights", cfg.hidden_weights), ("readout.weights", cfg.readout_weights)):
        _check_range(name, w, chip.WEIGHT_MIN, chip.WEIGHT_MAX)
    for name, s in (("input", cfg.input_shift), ("hidden", cfg.hidden_shift), ("readout", cfg.readout_shift)):
        _check_range(f"{name}.weight_bit_shift", np.array([s]), chip.WEIGHT_SHIFT_MIN, chip.WEIGHT_SHIFT_MAX)
    for pop, p in (("hidden", cfg.hidden), ("readout", cfg.readout)):
        _check_range(f"{pop} threshold", p.threshold, chip.THRESHOLD_MIN, chip.THRESHOLD_MAX)
        _check_range(f"{pop} v_mem_bias", p.v_mem_bias, chip.BIAS_MIN, chip.BIAS_MAX)
        _check_range(f"{pop} v_mem_decay", p.v_mem_decay, chip.DASH_MIN, chip.DASH_MAX)
        _check_range(f"{pop} i_syn_decay", p.i_syn_decay, chip.DASH_MIN, chip.DASH_MAX)
    n_hid = cfg.n_hidden
    if cfg.n_input_expansion > n_hid or cfg.n_output_expansion > n_hid:
        raise FastConfigError(
            f"input expansion {cfg.n_input_expansion} and output expansion {cfg.n_output_expansion} "
            f"cannot exceed the {n_hid} hidden neurons"
        )
    alias = np.array([-1 if a is None else int(a) for a in (cfg.hidden.alias_target or [None] * n_hid)], dtype=np.int32)
    _check_range("hidden alias_target", alias[alias >= 0], 0, n_hid - 1)

    def eff(w: np.ndarray, shift: int) -> np.ndarray:
        return wrap16(np.asarray(w, dtype=np.int64) << int(shift)).astype(np.int32)

    i32 = lambda v: np.ascontiguousarray(v, dtype=np.int32)  # noqa: E731
    return FastParams(
        w_in=eff(cfg.input_weights, cfg.input_shift),
        w_rec=eff(cfg.hidden_weights, cfg.hidden_shift),
        w_out=eff(cfg.readout_weights, cfg.readout_shift),
        thr=i32(cfg.hidden.threshold),
        dash_mem=i32(cfg.hidden.v_mem_decay),
        dash_syn=i32(cfg.hidden.i_syn_decay),
        bias=i32(cfg.hidden.v_mem_bias),
        alias=alias,
        thr_out=i32(cfg.readout.threshold),
        dash_mem_out=i32(cfg.readout.v_mem_decay),
        dash_syn_out=i32(cfg.readout.i_syn_decay),
        bias_out=i32(cfg.readout.v_mem_bias),
        has_bias=bool(cfg.bias_enable),
        cycle_shape=CycleShape.of(cfg),
    )


# ---- the compiled core ------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _sat(v):
    return min(max(v, -32768), 32767)


@njit(cache=True, inline="always")
def _wrap(v):
    return ((v + 32768) & 0xFFFF) - 32768


@njit(cache=True, inline="always")
def _decay(v, dash):
    """Chip decay step: v >> dash, at least 1 towards zero for a non-zero v."""
    dv = v >> dash
    if dv == 0 and v > 0:
        dv = 1
    return dv


@njit(cache=True, inline="always")
def _membrane(v, isyn, dash_mem, bias, has_bias):
    dv = _wrap(-_decay(v, dash_mem))
    dv = _sat(dv + isyn)
    if has_bias:
        dv = _sat(dv + bias)
    return _sat(v + dv)


@njit(cache=True, inline="always")
def _spike(v, thr, n, n_max):
    """Fire from count ``n`` up to ``n_max``; returns (new count, new vmem)."""
    if thr > 0:
        if v >= thr and n < n_max:
            k = min(v // thr, n_max - n)
            return n + k, v - k * thr  # stays >= 0: no wrap possible
        return n, v
    while v >= thr and n < n_max:  # thr <= 0: subtracting grows vmem until it wraps
        n += 1
        v = _wrap(v - thr)
    return n, v


@njit(cache=True)
def _exact_isyn(isyn, j, x_t, w_in, prev, w_rec):
    """Hidden neuron j's isyn after delivery, event by event in chip order (saturation path)."""
    s = isyn
    if j < w_in.shape[1]:
        for c in range(x_t.shape[0]):
            k = min(x_t[c], 15)
            if k > 0 and w_in[c, j] != 0:
                s = _sat(s + k * w_in[c, j])
    for i in range(prev.shape[0]):
        if prev[i] > 0 and w_rec[i, j] != 0:
            s = _sat(s + prev[i] * w_rec[i, j])
    return s


@njit(cache=True)
def _exact_isyn_out(isyn, o, prev, oen0, w_out):
    s = isyn
    for r in range(w_out.shape[0]):
        k = prev[oen0 + r]
        if k > 0 and w_out[r, o] != 0:
            s = _sat(s + k * w_out[r, o])
    return s


@njit(cache=True, parallel=True)
def _run_kernel(
    x, w_in, w_rec, w_out, thr, dm, ds, bias, alias, has_alias, thr_o, dm_o, ds_o, bias_o, has_bias,
    out_spk, out_vmem, hid_counts, hid_active,
):  # fmt: skip
    n_win, n_t, n_in = x.shape
    n_hid = thr.shape[0]
    n_out = thr_o.shape[0]
    n_ien = w_in.shape[1]
    n_oen = w_out.shape[0]
    oen0 = n_hid - n_oen
    for b in prange(n_win):
        isyn = np.zeros(n_hid, np.int64)
        vmem = np.zeros(n_hid, np.int64)
        isyn_o = np.zeros(n_out, np.int64)
        vmem_o = np.zeros(n_out, np.int64)
        prev = np.zeros(n_hid, np.int64)  # spikes of step t-1
        cur = np.zeros(n_hid, np.int64)
        acc_p = np.zeros(n_hid, np.int64)
        acc_n = np.zeros(n_hid, np.int64)
        acco_p = np.zeros(n_out, np.int64)
        acco_n = np.zeros(n_out, np.int64)
        for t in range(n_t):
            x_t = x[b, t]
            acc_p[:] = 0
            acc_n[:] = 0
            acco_p[:] = 0
            acco_n[:] = 0
            # 1. delivery: positive and negative sums bound every partial sum of any order
            for c in range(n_in):
                k = min(x_t[c], 15)
                if k > 0:
                    for j in range(n_ien):
                        w = k * w_in[c, j]
                        acc_p[j] += max(w, 0)
                        acc_n[j] += min(w, 0)
            for i in range(n_hid):
                k = prev[i]
                if k > 0:
                    for j in range(n_hid):
                        w = k * w_rec[i, j]
                        acc_p[j] += max(w, 0)
                        acc_n[j] += min(w, 0)
                    if i >= oen0:
                        for o in range(n_out):
                            w = k * w_out[i - oen0, o]
                            acco_p[o] += max(w, 0)
                            acco_n[o] += min(w, 0)
            # 2-4. hidden neurons in index order (aliases make the order matter)
            cur[:] = 0
            active = 0
            for j in range(n_hid):
                s = isyn[j]
                if s + acc_n[j] >= -32768 and s + acc_p[j] <= 32767:
                    s = s + acc_p[j] + acc_n[j]
                else:
                    s = _exact_isyn(s, j, x_t, w_in, prev, w_rec)
                s -= _decay(s, ds[j])
                isyn[j] = s
                v = _membrane(vmem[j], s, dm[j], bias[j], has_bias)
                n, v = _spike(v, thr[j], cur[j], 31)
                vmem[j] = v
                cur[j] = n
                if has_alias:
                    a = alias[j]
                    if a >= 0:
                        cur[a] = min(cur[a] + n, 31)
            for j in range(n_hid):
                if cur[j] > 0:
                    active += 1
                    hid_counts[b, j] += cur[j]
            hid_active[b, t] = active
            # 5. readout neurons
            for o in range(n_out):
                s = isyn_o[o]
                if s + acco_n[o] >= -32768 and s + acco_p[o] <= 32767:
                    s = s + acco_p[o] + acco_n[o]
                else:
                    s = _exact_isyn_out(s, o, prev, oen0, w_out)
                s -= _decay(s, ds_o[o])
                isyn_o[o] = s
                v = _membrane(vmem_o[o], s, dm_o[o], bias_o[o], has_bias)
                n, v = _spike(v, thr_o[o], 0, 1)
                vmem_o[o] = v
                out_spk[b, t, o] = n
                out_vmem[b, t, o] = v
            prev, cur = cur, prev


@dataclass
class SimOutput:
    """Raw simulator output: (N, T, Nout) spikes and vmem, (N, Nhid) spike counts, (N, T) active hidden neurons."""

    output_spikes: np.ndarray
    readout_vmem: np.ndarray
    hidden_spike_counts: np.ndarray
    hidden_active: np.ndarray


def simulate(p: FastParams, events: np.ndarray) -> SimOutput:
    """Run (N, T, Nin) non-negative event counts (clipped to 15 inside) from reset state."""
    x = np.ascontiguousarray(np.minimum(events, chip.MAX_INPUT_COUNT), dtype=np.int32)
    n, t, _ = x.shape
    n_hid, n_out = len(p.thr), len(p.thr_out)
    out = SimOutput(
        output_spikes=np.zeros((n, t, n_out), np.int32),
        readout_vmem=np.zeros((n, t, n_out), np.int32),
        hidden_spike_counts=np.zeros((n, n_hid), np.int64),
        hidden_active=np.zeros((n, t), np.int32),
    )
    _run_kernel(
        x, p.w_in, p.w_rec, p.w_out, p.thr, p.dash_mem, p.dash_syn, p.bias, p.alias, bool((p.alias >= 0).any()),
        p.thr_out, p.dash_mem_out, p.dash_syn_out, p.bias_out, p.has_bias,
        out.output_spikes, out.readout_vmem, out.hidden_spike_counts, out.hidden_active,
    )  # fmt: skip
    return out


class FastBackend:
    """Batched bit-exact Xylo IMU core simulator (numba); same results as `XyloSimBackend`."""

    name = "fast"

    def __init__(self) -> None:
        self._config: XyloConfig | None = None
        self._params: FastParams | None = None

    def load(self, config: XyloConfig) -> None:
        self._config = config
        self._params = prepare(config)

    def set_threshold_scale(self, scale: float) -> None:
        if self._config is None:
            raise RuntimeError("load a configuration before setting the threshold scale")
        self._params = prepare(self._config.with_threshold_scale(scale))

    def run(self, events: np.ndarray) -> RunResult:
        if self._config is None or self._params is None:
            raise RuntimeError("load a configuration before running the fast backend")
        x = check_events(events, self._config.n_inputs)
        sim = simulate(self._params, x)
        input_active = np.count_nonzero(x, axis=-1)
        return RunResult(
            output_spikes=sim.output_spikes.astype(np.int64),
            readout_vmem=sim.readout_vmem.astype(np.int64),
            hidden_spike_counts=sim.hidden_spike_counts,
            cycles_per_step=cycles_from_activity(self._params.cycle_shape, input_active, sim.hidden_active),
            prediction=predict_from_vmem(sim.readout_vmem),
        )
