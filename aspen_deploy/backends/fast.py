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
   n += 1; vmem = wrap(vmem - thr)`` (thr > 0: ``k = min(vmem // thr, 31 - n)`` at once;
   thr = 0 gives 31 spikes whenever vmem >= 0; thr < 0 adds |thr| per spike until vmem wraps
   below thr, e.g. 2 spikes from vmem 0 at thr = -20000). A neuron with an alias target then adds its total
   ``n`` to the target's count, capped at 31; a target with a lower index has already spiked,
   one with a higher index starts from that count. The recorded hidden spikes, and what is
   delivered at t+1, are these counts.
5. Readout neurons: the same with at most 1 spike and no aliases. ``readout_vmem`` is the
   membrane after the spike's subtraction.

Latency follows: input -> hidden in the same step, hidden -> hidden and hidden -> readout one
step later.

Implementation (each choice measured on the shared 2-core development machine with
``scripts/bench_sim.py``: demo-shaped network 15-144-6, 256 windows x 512 steps, ~8 % of hidden
neurons spiking per step, and on the demo's trained networks, 20-45 %). A numpy or torch loop
over time with the batch vectorized needs a dense (256 x 144) @ (144 x 144) product per step
and ~30 elementwise passes: 0.1-0.2 s of BLAS alone, well under 100x xylosim. The work is
small and sparse instead, so this module compiles an event-driven loop with numba
(``cache=True``, windows in parallel with ``prange``), per window and step:

* delivery walks the step's events in chip order (active inputs, then the list of neurons
  that spiked at t-1) and applies each as one saturating add vectorized over its weight row
  (`_deliver`): exactly the chip's sequence, as fast as plain sums (an earlier version added
  plain sums and redid neurons whose sum might have clipped: 10-20x slower on trained
  networks, where tens of spikes per step with weights up to 127 << shift clip often);
* one vectorized pass (8 float32 lanes) runs steps 2-4 for every neuron on integer-valued
  float32 state, exact because every value stays within int16, far below 2**24; the per-lane
  ``floor(v / thr)`` is one multiply by `reciprocal_up` (exact for all int16 operands);
* neurons whose threshold is <= 0, whose v_mem_decay is 0 (``-(v >> 0)`` can wrap) or that
  take part in an alias (their order matters) are finished in integers (`_special_neuron`),
  from a list, so that the vectorized pass has no branch for them;
* the spike list for t+1 comes from walking the set bits of 64-neuron masks of the spike
  counts (count trailing zeros), not from a branch per neuron;
* cycles per step are looked up in the cycles model's table, the readout membrane is summed
  for the prediction and negative input counts are caught, all inside the kernel (numpy
  passes over the inputs and outputs cost ~5 ms per 256 windows, a sixth of the run).

Lessons that shaped the code (each measured): numba's integer reductions inside a loop keep
LLVM from vectorizing it (so the neuron pass has none), the zero-division checks of numba's
default error model do too (``error_model="numpy"``), so do a long list of separate arrays
(runtime alias checks: state and parameters are rows of two 2-D arrays) and a signed loop
index that does not start at 0 (numba's negative-index wrap check: loops over ranges use
unsigned indices). A slice is an array object whose reference count numba updates
atomically (slower than adding 48 floats), so the kernel indexes instead of slicing. LLVM's
vectorized loop does 32 floats per iteration and leaves the rest to a scalar loop: weight
rows are widened to whole 32-column chunks (adding zeros is cheaper). Tried and dropped:
stepping 2-8 windows in lockstep (LLVM stopped vectorizing the inlined pass), two events
per delivery loop, 8- or 16-wide inner loops.

Measured: see the README (``python scripts/bench_sim.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import NEGATIVE_EVENTS, RunResult, check_events, predict_from_sums, readout_skip_steps
from aspen_deploy.backends.cycles import CycleShape, cycles_table
from aspen_deploy.config import XyloConfig

try:  # numba is a core dependency; the message says what to do if it is missing
    from numba import njit, prange
    from numba.cpython.unsafe.numbers import trailing_zeros
except ImportError as e:  # pragma: no cover - exercised only without numba
    raise ImportError("the fast backend needs numba: pip install numba (or use backend 'xylosim')") from e

S16_MIN, S16_MAX = chip.STATE_MIN, chip.STATE_MAX
LANES = 8  # float32 lanes of one AVX2 register
CHUNK = 4 * LANES  # what LLVM's vectorized loops do per iteration (weight rows are widened to it)
# rows of the per-window state array S (float32, one column per neuron); one array so that
# LLVM's alias checks stay few enough for it to vectorize the neuron pass
ISYN, VMEM, CUR = range(3)
N_ROWS = 3
# rows of the parameter array P (float32, one column per neuron)
P_INV_DS, P_INV_DM, P_BIAS, P_THR, P_RCP = range(5)
N_PARAM_ROWS = 5


def wrap16(v: np.ndarray) -> np.ndarray:
    """Two's-complement wrap to int16 (what a C++ conversion to ``int16_t`` does)."""
    return ((np.asarray(v, dtype=np.int64) - S16_MIN) % 65536 + S16_MIN).astype(np.int64)


@dataclass(frozen=True)
class FastParams:
    """One configuration laid out for the kernel.

    Per population: integer registers (``thr``, ``dash_mem``, ``bias``; ``alias``: target
    index or -1), used for the neurons computed in integers (`_special_neuron`), and ``P`` /
    ``PO``, float32 rows ``P_*`` per hidden / readout neuron for the vectorized pass (see
    `_param_rows`), padded to whole `LANES`. ``wf_*``: the effective weights ``wrap16(w <<
    shift)`` as float32, columns padded likewise: ``wf_in`` (Nin, ·), ``wf_rec`` (·, ·)
    [pre, post], ``wf_out`` (Noen, ·) for hidden neurons Nhid-Noen .. Nhid-1; ``*_lo`` /
    ``*_hi``: the column range each row delivers to (`_row_ranges`). ``special`` /
    ``special_out``: the neurons finished in integers (`_special_neurons`). ``cycles_table``:
    the cycles model per (active inputs, spiking hidden neurons).
    """

    thr: np.ndarray
    dash_mem: np.ndarray
    bias: np.ndarray
    alias: np.ndarray
    thr_out: np.ndarray
    dash_mem_out: np.ndarray
    bias_out: np.ndarray
    has_bias: bool
    cycles_table: np.ndarray
    wf_in: np.ndarray
    wf_rec: np.ndarray
    wf_out: np.ndarray
    in_lo: np.ndarray
    in_hi: np.ndarray
    rec_lo: np.ndarray
    rec_hi: np.ndarray
    P: np.ndarray
    PO: np.ndarray
    special: np.ndarray
    special_out: np.ndarray


class FastConfigError(ValueError):
    """A configuration value that the core's registers cannot hold (run the design-rule checker)."""


def _check_range(name: str, v: np.ndarray, lo: int, hi: int) -> None:
    v = np.asarray(v)
    if v.size and (v.min() < lo or v.max() > hi):
        raise FastConfigError(
            f"{name} must lie in {lo}..{hi}, found {v.min()}..{v.max()}; run `aspen check` on the config"
        )


def prepare(cfg: XyloConfig) -> FastParams:
    """Effective integer arrays for the kernel; raises `FastConfigError` for out-of-register values."""
    for name, w in (
        ("input.weights", cfg.input_weights),
        ("hidden.weights", cfg.hidden_weights),
        ("readout.weights", cfg.readout_weights),
    ):
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
    w_in = eff(cfg.input_weights, cfg.input_shift)
    w_rec = eff(cfg.hidden_weights, cfg.hidden_shift)
    w_out = eff(cfg.readout_weights, cfg.readout_shift)
    thr, bias = i32(cfg.hidden.threshold), i32(cfg.hidden.v_mem_bias)
    dash_mem, dash_syn = i32(cfg.hidden.v_mem_decay), i32(cfg.hidden.i_syn_decay)
    n_out = cfg.n_outputs
    thr_out, dash_mem_out, bias_out = i32(cfg.readout.threshold), i32(cfg.readout.v_mem_decay), i32(cfg.readout.v_mem_bias)
    nh, no = _padded(n_hid), _padded(n_out)  # padding neurons have no weights: they never spike
    in_lo, in_hi = _row_ranges(w_in, nh)
    rec_lo, rec_hi = _row_ranges(w_rec, nh)
    return FastParams(
        thr=thr,
        dash_mem=dash_mem,
        bias=bias,
        alias=alias,
        thr_out=thr_out,
        dash_mem_out=dash_mem_out,
        bias_out=bias_out,
        has_bias=bool(cfg.bias_enable),
        cycles_table=cycles_table(CycleShape.of(cfg)),
        wf_in=_pad_f32(w_in, w_in.shape[0], nh),
        wf_rec=_pad_f32(w_rec, nh, nh),
        wf_out=_pad_f32(w_out, w_out.shape[0], no),
        in_lo=in_lo,
        in_hi=in_hi,
        rec_lo=rec_lo,
        rec_hi=rec_hi,
        P=_param_rows(nh, thr, dash_mem, dash_syn, bias if cfg.bias_enable else 0 * bias),
        PO=_param_rows(
            no, thr_out, dash_mem_out, i32(cfg.readout.i_syn_decay), bias_out if cfg.bias_enable else 0 * bias_out
        ),
        special=_special_neurons(thr, dash_mem, alias),
        special_out=_special_neurons(thr_out, dash_mem_out, np.full(n_out, -1)),
    )


def _padded(n: int) -> int:
    """``n`` rounded up to whole vectors of `LANES`."""
    return -(-n // LANES) * LANES


def _pad_f32(w: np.ndarray, rows: int, cols: int) -> np.ndarray:
    out = np.zeros((rows, cols), np.float32)
    out[: w.shape[0], : w.shape[1]] = w
    return out


def reciprocal_up(thr: np.ndarray) -> np.ndarray:
    """The smallest float32 >= 1 / thr, for thresholds 1..32767.

    With it ``floor(float32(v) * reciprocal_up(thr)) == v // thr`` for every 0 <= v <= 32767:
    ``v * r`` lies in ``[v / thr, (v / thr)(1 + 2**-23)]`` and rounding keeps it below the next
    integer because ``(v // thr + 1) thr <= 2**16`` leaves a gap of at least ``1 / thr``
    (checked for all 2**30 pairs by ``scripts/check_reciprocal.py``; sampled in the tests).
    """
    t = np.asarray(thr, dtype=np.float64)
    r = (1.0 / t).astype(np.float32)
    return np.where(r.astype(np.float64) < 1.0 / t, np.nextafter(r, np.float32(np.inf)), r).astype(np.float32)


def _param_rows(width: int, thr: np.ndarray, dash_mem: np.ndarray, dash_syn: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """float32 (N_PARAM_ROWS, width) rows for the vectorized neuron pass of one population.

    ``P_INV_DS``/``P_INV_DM``: 2**-dash (floor(v * 2**-d) == v >> d exactly); ``P_BIAS``: the
    bias, 0 when disabled; ``P_THR``: threshold, 1 where thr <= 0 (those neurons are special);
    ``P_RCP``: `reciprocal_up` of it. Columns past len(thr) pad the population to whole
    vectors: no weights, threshold 32767, so they never spike.
    """
    n = len(thr)
    P = np.zeros((N_PARAM_ROWS, width), np.float32)
    P[P_INV_DS] = P[P_INV_DM] = 1.0
    P[P_THR] = S16_MAX
    P[P_INV_DS, :n] = 2.0 ** -dash_syn.astype(np.float64)
    P[P_INV_DM, :n] = 2.0 ** -dash_mem.astype(np.float64)
    P[P_BIAS, :n] = bias
    P[P_THR, :n] = np.where(thr > 0, thr, 1)
    P[P_RCP] = reciprocal_up(P[P_THR])
    return P


def _special_neurons(thr: np.ndarray, dash_mem: np.ndarray, alias: np.ndarray) -> np.ndarray:
    """Indices of the neurons `_special_neuron` computes in integers: threshold <= 0, alias source or
    target (their order matters), v_mem_decay 0 (``-(v >> 0)`` can wrap)."""
    aliased = alias >= 0
    special = (thr <= 0) | aliased | (dash_mem == 0)
    special[alias[aliased]] = True
    return np.flatnonzero(special).astype(np.int32)


def _row_ranges(w: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, a half-open column range that holds its non-zero entries ((0, 0) when none),
    widened to whole `CHUNK`s of columns within ``width`` (moved left where it would pass the
    end): LLVM's vectorized loop does 32 floats per iteration and leaves any rest to a scalar
    loop, slower than adding the zeros it covers."""
    nz = w != 0
    any_nz = nz.any(axis=1)
    lo = np.where(any_nz, nz.argmax(axis=1), 0)
    hi = np.where(any_nz, w.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    span = np.minimum(-(-(hi - lo) // CHUNK) * CHUNK, width)
    lo = np.where(any_nz, np.minimum(lo, width - span), 0)
    return lo.astype(np.int32), np.where(any_nz, lo + span, 0).astype(np.int32)


# ---- the compiled core ------------------------------------------------------------------------
# error_model="numpy" drops numba's zero-division checks, which is what lets LLVM vectorize
# the per-neuron pass over 8 float32 lanes; float32 min/max become vminps/vmaxps. The fastmath
# flags are safe here because every float is a whole number well inside float32's exact range:
# no NaN or inf occurs, the sign of a zero never matters, and a fused multiply-add of exact
# integers is exact (measured ~5 % faster; no reassociation: the saturating order must stay).
_JIT = dict(cache=True, error_model="numpy", fastmath={"nnan", "ninf", "nsz", "contract"})
F32 = np.float32
U64 = np.uint64


@njit(**_JIT)
def _sat(v):
    v = v if v < 32767 else 32767
    return v if v > -32768 else -32768


@njit(**_JIT)
def _wrap(v):
    return ((v + 32768) & 0xFFFF) - 32768


@njit(**_JIT)
def _decay(v, dash):
    """Chip decay step (integers): v >> dash, but 1 when that is 0 and v > 0."""
    dv = v >> dash
    return dv + ((dv == 0) & (v > 0))


@njit(**_JIT)
def _membrane(v, isyn, dash_mem, bias, has_bias):
    dv = _wrap(-_decay(v, dash_mem))
    dv = _sat(dv + isyn)
    if has_bias:
        dv = _sat(dv + bias)
    return _sat(v + dv)


@njit(**_JIT)
def _spike(v, thr, n, n_max):
    """Fire from count ``n`` up to ``n_max`` (integers); returns (new count, new vmem)."""
    if thr > 0:
        if v >= thr and n < n_max:
            k = min(v // thr, n_max - n)
            return n + k, v - k * thr  # stays >= 0: no wrap possible
        return n, v
    while v >= thr and n < n_max:  # thr <= 0: subtracting grows vmem until it wraps
        n += 1
        v = _wrap(v - thr)
    return n, v


@njit(**_JIT)
def _sat_f(v):
    return max(min(v, F32(32767)), F32(-32768))


@njit(**_JIT)
def _decay_f(v, inv):
    """`_decay` on integer-valued float32: floor(v * 2**-dash) is exactly v >> dash; the
    max with min(v, 1) turns a 0 into 1 for v >= 1 and changes nothing for v <= 0."""
    return max(np.floor(v * inv), min(v, F32(1)))


@njit(inline="always", **_JIT)
def _deliver(S, k, W, i, lo, hi):
    """One event into row ``ISYN``: ``S[ISYN, j] = sat(S[ISYN, j] + k W[i, j])`` for j in lo..hi-1
    (k equal-sign saturating adds of w are one clipped add of k w), written without slices: a
    slice is an array object whose reference count numba updates atomically, slower than the
    adds. Unsigned indices: numba's negative-index wrap check would stop LLVM vectorizing."""
    for j in range(U64(lo), U64(hi)):
        S[ISYN, j] = _sat_f(S[ISYN, j] + k * W[i, j])


@njit(**_JIT)
def _special_neuron(S, j, thr, dm, bias, has_bias, n0, n_max):
    """Steps 3-4 in integers for a neuron the vectorized pass leaves alone (threshold <= 0,
    alias, v_mem_decay 0): from its new isyn and its old vmem in S, firing from count ``n0``;
    writes the new vmem and returns the spike count."""
    v = _membrane(np.int64(S[VMEM, j]), np.int64(S[ISYN, j]), dm, bias, has_bias)
    n, v = _spike(v, thr, n0, n_max)
    S[VMEM, j] = v
    return n


@njit(**_JIT)
def _run_window(
    x, P, PO, wf_in, in_lo, in_hi, wf_rec, rec_lo, rec_hi, wf_out,
    thr, dm, bias, alias, has_alias, special, thr_o, dm_o, bias_o, special_o, has_bias, cyc_table, t_skip,
    out_spk, out_vmem, vmem_sum, hid_counts, hid_active, cycles,
):  # fmt: skip
    """One window from reset: x (T, Nin); writes out_spk/out_vmem (T, Nout), vmem_sum (Nout,):
    readout membrane summed over steps >= t_skip, hid_counts (Nhid,), and per step (T,)
    hid_active (hidden neurons that spiked) and cycles (``cyc_table[inputs, hidden]``, the
    cycles model looked up).

    State: integer-valued float32 rows of S (hidden) and SO (readout); exact, as every sum is
    of values within int16, far below 2**24.
    """
    n_t, n_in = x.shape
    n_hid = thr.shape[0]
    n_out = thr_o.shape[0]
    nh = P.shape[1]  # padded to whole vectors
    no = PO.shape[1]
    oen0 = U64(n_hid - wf_out.shape[0])
    S = np.zeros((N_ROWS, nh), np.float32)
    SO = np.zeros((N_ROWS, no), np.float32)
    saved = np.zeros(special.shape[0], np.float32)
    saved_o = np.zeros(special_o.shape[0], np.float32)
    alias_in = np.zeros(n_hid, np.int64)
    in_idx = np.zeros(n_in + 1, np.uint64)  # + 1: the branch-free append writes one past
    in_cnt = np.zeros(n_in + 1, np.int64)
    negative = False
    # hidden neurons that spiked, as (index, count) lists: [t & 1] holds step t-1
    pre_idx = np.zeros((2, n_hid + 1), np.uint64)  # + 1: the branch-free append writes one past
    pre_cnt = np.zeros((2, n_hid + 1), np.float32)
    n_pre = np.zeros(2, np.uint64)
    for t in range(n_t):
        ro = t & 1  # list of step t-1
        rw = 1 - ro  # list of step t
        # 1. delivery in chip order (inputs, then the spikes of step t-1), each event one
        # saturating add vectorized over its weight row
        n_in_act = 0
        for c in range(n_in):  # branch-free list of the active inputs: events are sparse, random
            k = min(x[t, c], 15)
            in_idx[n_in_act] = c
            in_cnt[n_in_act] = k
            n_in_act += 1 if k > 0 else 0
            negative |= k < 0
        for a in range(n_in_act):
            c = in_idx[a]
            _deliver(S, F32(in_cnt[a]), wf_in, c, in_lo[c], in_hi[c])
        for a in range(n_pre[ro]):
            i = pre_idx[ro, a]
            k = pre_cnt[ro, a]
            _deliver(S, k, wf_rec, i, rec_lo[i], rec_hi[i])
            if i >= oen0:
                _deliver(SO, k, wf_out, i - oen0, U64(0), U64(no))
        # 2-4. every hidden neuron at once, vectorized; CUR = -1 marks the special neurons
        _keep_vmem(S, special, saved)
        _neuron_pass(S, P, F32(31), has_bias)
        _mark_special(S, special, saved)
        # special neurons in index order (aliases make the order matter), spike list for t+1
        n_new = U64(0)  # unsigned indices: numba's negative-index wrap checks cost more than the work
        if not has_alias:
            # walk the set bits of 64-neuron masks of CUR != 0 (spiked or special): spikes are
            # sparse, and a branch per neuron would mispredict
            for base in range(U64(0), U64(nh), U64(64)):
                m = U64(0)
                for l in range(min(U64(64), U64(nh) - base)):
                    m |= U64(S[CUR, base + l] != F32(0)) << l
                while m != U64(0):
                    j = base + trailing_zeros(m)
                    m &= m - U64(1)
                    c = S[CUR, j]
                    if c < F32(0):
                        c = F32(_special_neuron(S, j, thr[j], dm[j], bias[j], has_bias, 0, 31))
                    pre_idx[rw, n_new] = j
                    pre_cnt[rw, n_new] = c
                    n_new += U64(1) if c > F32(0) else U64(0)
                    hid_counts[j] += np.int64(c)
        else:
            alias_in[:] = 0
            for j in range(n_hid):
                if S[CUR, j] < F32(0):  # all alias sources and targets are special
                    n = _special_neuron(S, j, thr[j], dm[j], bias[j], has_bias, alias_in[j], 31)
                    S[CUR, j] = n
                    a = alias[j]
                    if a >= 0:
                        if a <= j:  # the target has spiked already: add to its count
                            S[CUR, a] = min(S[CUR, a] + n, 31)
                        else:  # it starts from these spikes when its turn comes
                            alias_in[a] = min(alias_in[a] + n, 31)
            for j in range(U64(n_hid)):
                c = S[CUR, j]
                pre_idx[rw, n_new] = j
                pre_cnt[rw, n_new] = c
                n_new += U64(1) if c > F32(0) else U64(0)
                hid_counts[j] += np.int64(c)
        n_pre[rw] = n_new
        hid_active[t] = n_new
        cycles[t] = cyc_table[n_in_act, n_new]
        # 5. readout neurons, fed by the spikes of step t-1, vectorized the same way (cap 1)
        _keep_vmem(SO, special_o, saved_o)
        _neuron_pass(SO, PO, F32(1), has_bias)
        _mark_special(SO, special_o, saved_o)
        for o in range(n_out):
            c = SO[CUR, o]
            if c < F32(0):
                c = F32(_special_neuron(SO, o, thr_o[o], dm_o[o], bias_o[o], has_bias, 0, 1))
            out_spk[t, o] = np.int64(c)
            out_vmem[t, o] = np.int64(SO[VMEM, o])
            if t >= t_skip:
                vmem_sum[o] += np.int64(SO[VMEM, o])
    return negative  # a negative input count (counted as none): the caller raises


@njit(inline="always", **_JIT)
def _neuron_pass(S, P, n_max, has_bias):
    """Steps 2-4 for all neurons of one population on integer-valued float32 rows (vectorized).

    Row ``ISYN`` holds isyn after this step's delivery; the pass decays it in place, updates
    ``VMEM`` and writes the spike count to ``CUR`` (`_mark_special` then undoes the membrane
    of the special neurons). Spikes: ``k = min(floor(max(v, 0) * rcp_up), n_max)`` (exact,
    see `reciprocal_up`), ``v -= k thr``.
    """
    for j in range(S.shape[1]):
        s = S[ISYN, j]
        s = s - _decay_f(s, P[P_INV_DS, j])
        v0 = S[VMEM, j]
        d = _sat_f(s - _decay_f(v0, P[P_INV_DM, j]))
        if has_bias:  # loop-invariant: LLVM compiles two loops
            d = _sat_f(d + P[P_BIAS, j])
        v = _sat_f(v0 + d)
        k = min(np.floor(max(v, F32(0)) * P[P_RCP, j]), n_max)
        v = v - k * P[P_THR, j]
        S[ISYN, j] = s
        S[VMEM, j] = v
        S[CUR, j] = k


@njit(inline="always", **_JIT)
def _keep_vmem(S, special, saved):
    for a in range(special.shape[0]):
        saved[a] = S[VMEM, U64(special[a])]


@njit(inline="always", **_JIT)
def _mark_special(S, special, saved):
    """Special neurons (threshold <= 0, alias, v_mem_decay 0) get their membrane back from before
    the pass and CUR = -1: `_special_neuron` finishes them in integers. Usually there are none,
    which keeps this out of the vectorized pass."""
    for a in range(special.shape[0]):
        S[VMEM, U64(special[a])] = saved[a]
        S[CUR, U64(special[a])] = F32(-1)


@njit(parallel=True, **_JIT)
def _run_kernel(
    x, P, PO, wf_in, in_lo, in_hi, wf_rec, rec_lo, rec_hi, wf_out,
    thr, dm, bias, alias, has_alias, special, thr_o, dm_o, bias_o, special_o, has_bias, cyc_table, t_skip,
    out_spk, out_vmem, vmem_sum, hid_counts, hid_active, cycles, negative,
):  # fmt: skip
    """All windows, in parallel over the window axis; ``negative[b]``: window b had a negative count."""
    for b in prange(x.shape[0]):
        negative[b] = _run_window(
            x[b], P, PO, wf_in, in_lo, in_hi, wf_rec, rec_lo, rec_hi, wf_out,
            thr, dm, bias, alias, has_alias, special, thr_o, dm_o, bias_o, special_o, has_bias, cyc_table, t_skip,
            out_spk[b], out_vmem[b], vmem_sum[b], hid_counts[b], hid_active[b], cycles[b],
        )  # fmt: skip


@dataclass
class SimOutput:
    """Raw simulator output: (N, T, Nout) spikes and vmem, (N, Nout) vmem summed over the steps the
    prediction reads (`readout_skip_steps` on), (N, Nhid) spike counts, and per step (N, T): hidden
    neurons that spiked and cycles (Rockpool's cycles model)."""

    output_spikes: np.ndarray
    readout_vmem: np.ndarray
    vmem_sum: np.ndarray
    hidden_spike_counts: np.ndarray
    hidden_active: np.ndarray
    cycles: np.ndarray


def simulate(p: FastParams, events: np.ndarray) -> SimOutput:
    """Run (N, T, Nin) event counts (clipped to 15 inside) from reset state; ValueError if any is negative."""
    # one dtype, so numba compiles one specialization; counts above 15 are clipped in the kernel
    x = np.ascontiguousarray(events, dtype=np.int64)
    n, t, _ = x.shape
    n_hid, n_out = len(p.thr), len(p.thr_out)
    negative = np.zeros(n, np.bool_)
    out = SimOutput(
        output_spikes=np.zeros((n, t, n_out), np.int64),  # int64 as every backend returns
        readout_vmem=np.zeros((n, t, n_out), np.int64),
        vmem_sum=np.zeros((n, n_out), np.int64),
        hidden_spike_counts=np.zeros((n, n_hid), np.int64),
        hidden_active=np.zeros((n, t), np.int32),
        cycles=np.zeros((n, t), np.float64),
    )
    _run_kernel(
        x, p.P, p.PO, p.wf_in, p.in_lo, p.in_hi, p.wf_rec, p.rec_lo, p.rec_hi, p.wf_out,
        p.thr, p.dash_mem, p.bias, p.alias, bool((p.alias >= 0).any()), p.special,
        p.thr_out, p.dash_mem_out, p.bias_out, p.special_out, p.has_bias, p.cycles_table, readout_skip_steps(t),
        out.output_spikes, out.readout_vmem, out.vmem_sum, out.hidden_spike_counts, out.hidden_active,
        out.cycles, negative,
    )  # fmt: skip
    if negative.any():
        raise ValueError(NEGATIVE_EVENTS)
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
        x = check_events(events, self._config.n_inputs, check_sign=False)  # the kernel checks the sign
        sim = simulate(self._params, x)
        return RunResult(
            output_spikes=sim.output_spikes,
            readout_vmem=sim.readout_vmem,
            hidden_spike_counts=sim.hidden_spike_counts,
            cycles_per_step=sim.cycles,
            prediction=predict_from_sums(sim.vmem_sum),
        )
