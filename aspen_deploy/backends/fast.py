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

* isyn is int16, and each event (an active input, or a neuron that spiked at t-1, in chip
  order) is one saturating add over the part of its weight row that can be non-zero
  (`_deliver`, `_saturating_add16`: ``llvm.sadd.sat``, i.e. vpaddsw, 16 neurons per
  instruction; a count k > 1 adds k w in int32 lanes and clips once). That is the chip's
  sequence itself, so no sum ever needs redoing (an earlier version added plain sums and
  redid neurons whose sum might have clipped: 10-20x slower on trained networks, where tens
  of spikes per step with weights up to 127 << shift clip often). Weight rows are stored cut
  to that part, one after another (`_row_segments`): 9 kB for the 15-48-48-48 network's
  hidden weights, where full float32 rows took 83 kB, more than the core's L1 cache;
* one vectorized pass (8 float32 lanes) runs steps 2-4 for every neuron on integer-valued
  float32 state, exact because every value stays within int16, far below 2**24; the per-lane
  ``floor(v / thr)`` is one multiply by `reciprocal_up` (exact for all int16 operands);
* neurons whose threshold is <= 0, whose v_mem_decay is 0 (``-(v >> 0)`` can wrap) or that
  take part in an alias (their order matters) are finished in integers (`_special_neuron`),
  from a list, so that the vectorized pass has no branch for them;
* the spikes are found by walking the set bits of 64-neuron masks of the spike counts (one
  vector compare and vmovmskps per 8 neurons, `_nonzero_bits8`; then count trailing zeros),
  not by a branch per neuron, and each is delivered as soon as it is found: step t+1's inputs
  are delivered just before, which keeps the chip's order without a spike list;
* cycles per step are looked up in the cycles model's table, the readout membrane is summed
  for the prediction and negative input counts are caught, all inside the kernel (numpy
  passes over the inputs and outputs cost ~5 ms per 256 windows, a sixth of the run).

Lessons that shaped the code (each measured): numba's integer reductions inside a loop keep
LLVM from vectorizing it (so the neuron pass has none), the zero-division checks of numba's
default error model do too (``error_model="numpy"``), so do a long list of separate arrays
(runtime alias checks: state and parameters are rows of two 2-D arrays) and a signed loop
index that does not start at 0 (numba's negative-index wrap check: loops over ranges use
unsigned indices). A slice is an array object whose reference count numba updates
atomically (slower than the adds), so the kernel indexes instead of slicing. numba compiles
neither a saturating int16 add nor a lane mask from its loops, hence two small LLVM IR
intrinsics. The switch from float32 isyn (a 32-wide fused multiply-add and clip per event,
rows widened to 32 columns) was measured step by step, comparing copies of this module run
interleaved in one process (best and median of 60 runs) on the benchmark network: masks
-7 %, compact rows -5 %, int16 adds -5 %, delivery during the walk -12 %, one clipped add
for k > 1 instead of k adds -7 % (-12 % on the demo's trained network); -32 % in all (-20 to
-25 % on the trained networks). Tried and dropped: stepping 2-8 windows in lockstep (LLVM
stopped vectorizing the inlined pass), two events per delivery loop, a per-matrix uniform
row width, adding the bias row unconditionally, a branch on k == 1 outside the row loop.

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
    from llvmlite import ir
    from numba import njit, prange
    from numba.core import cgutils, types
    from numba.cpython.unsafe.numbers import trailing_zeros
    from numba.extending import intrinsic
except ImportError as e:  # pragma: no cover - exercised only without numba
    raise ImportError("the fast backend needs numba: pip install numba (or use backend 'xylosim')") from e

S16_MIN, S16_MAX = chip.STATE_MIN, chip.STATE_MAX
LANES = 8  # float32 lanes of one AVX2 register (the neuron pass, the spike masks)
I16_LANES = 16  # int16 lanes of one: weight rows and populations are padded to whole vectors of them
# rows of the per-window float32 state array S (one column per neuron); one array so that
# LLVM's alias checks stay few enough for it to vectorize the neuron pass. isyn is int16.
VMEM, CUR = range(2)
N_ROWS = 2
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
    `_param_rows`), padded to whole `I16_LANES`. Weights: the effective ``wrap16(w << shift)``
    as int16. ``w_in`` (Nin rows) and ``w_rec`` ([pre, post]) hold each row's column range
    ``*_lo[i]`` .. ``*_hi[i]`` (`_row_ranges`) one after another from ``*_start[i]``
    (`_row_segments`); ``w_out``: (Noen, padded Nout) flattened, for hidden neurons
    Nhid-Noen .. Nhid-1. ``special`` /
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
    w_in: np.ndarray
    in_start: np.ndarray
    in_lo: np.ndarray
    in_hi: np.ndarray
    w_rec: np.ndarray
    rec_start: np.ndarray
    rec_lo: np.ndarray
    rec_hi: np.ndarray
    w_out: np.ndarray
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
    w_in_rows, in_start = _row_segments(_padded_matrix(w_in, w_in.shape[0], nh), in_lo, in_hi)
    w_rec_rows, rec_start = _row_segments(_padded_matrix(w_rec, n_hid, nh), rec_lo, rec_hi)
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
        w_in=w_in_rows,
        in_start=in_start,
        in_lo=in_lo,
        in_hi=in_hi,
        w_rec=w_rec_rows,
        rec_start=rec_start,
        rec_lo=rec_lo,
        rec_hi=rec_hi,
        w_out=_padded_matrix(w_out, w_out.shape[0], no).ravel(),
        P=_param_rows(nh, thr, dash_mem, dash_syn, bias if cfg.bias_enable else 0 * bias),
        PO=_param_rows(
            no, thr_out, dash_mem_out, i32(cfg.readout.i_syn_decay), bias_out if cfg.bias_enable else 0 * bias_out
        ),
        special=_special_neurons(thr, dash_mem, alias),
        special_out=_special_neurons(thr_out, dash_mem_out, np.full(n_out, -1)),
    )


def _padded(n: int) -> int:
    """``n`` rounded up to whole vectors of `I16_LANES` (also whole vectors of `LANES`)."""
    return -(-n // I16_LANES) * I16_LANES


def _padded_matrix(w: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """int16 (rows, cols), ``w`` in its top-left corner, zeros elsewhere."""
    out = np.zeros((rows, cols), np.int16)
    out[: w.shape[0], : w.shape[1]] = w
    return out


def _row_segments(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's columns ``lo[i]`` .. ``hi[i]`` - 1, one after another (``start[i]``: where row i
    begins): a delivery reads only the part of a row that can be non-zero, and a layered
    network's rows take a fraction of the cache (9 kB for 15-48-48-48)."""
    span = hi.astype(np.int64) - lo
    flat = np.concatenate([w[i, lo[i] : hi[i]] for i in range(len(lo))] + [np.zeros(0, np.int16)])
    return np.ascontiguousarray(flat, dtype=np.int16), (np.cumsum(span) - span).astype(np.uint64)


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
    widened to whole vectors of `I16_LANES` columns within ``width`` (moved left where it would
    pass the end): a delivery is one saturating add per vector."""
    nz = w != 0
    any_nz = nz.any(axis=1)
    lo = np.where(any_nz, nz.argmax(axis=1), 0)
    hi = np.where(any_nz, w.shape[1] - nz[:, ::-1].argmax(axis=1), 0)
    span = np.minimum(-(-(hi - lo) // I16_LANES) * I16_LANES, width)
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


# Two vector operations that numba's loops do not compile to on their own, written as LLVM IR
# (portable: LLVM lowers them to vmovmskps / vpaddsw on x86 and to the matching NEON code on ARM)


def _vector_pointer(context, builder, array_type, array, indices, index_types, vector_type):
    """Pointer to ``array[indices]`` as a pointer to ``vector_type`` (no bounds or wrap checks)."""
    ary = context.make_array(array_type)(context, builder, array)
    idx = [context.cast(builder, i, t, types.intp) for i, t in zip(indices, index_types)]
    ptr = cgutils.get_item_pointer(context, builder, array_type, ary, idx, wraparound=False)
    return builder.bitcast(ptr, vector_type.as_pointer())


@intrinsic
def _nonzero_bits8(typingctx, a, row, col):
    """Bit l set where ``a[row, col + l] != 0`` (float32), l = 0..7: one compare and vmovmskps,
    where numba's loop over the lanes took ~25 ns per step for 144 neurons."""

    def codegen(context, builder, sig, args):
        vt = ir.VectorType(ir.FloatType(), LANES)
        v = builder.load(_vector_pointer(context, builder, sig.args[0], args[0], args[1:], sig.args[1:], vt), align=4)
        nonzero = builder.fcmp_unordered("!=", v, ir.Constant(vt, [0.0] * LANES))
        return builder.zext(builder.bitcast(nonzero, ir.IntType(LANES)), ir.IntType(64))

    return types.uint64(a, row, col), codegen


@intrinsic
def _saturating_add16(typingctx, dst, d, src, s, k):
    """``dst[d:d+16] = sat(dst[d:d+16] + k src[s:s+16])`` on 1-D int16 arrays, k > 0: the chip's
    k saturating adds of an event of count k. k == 1 is one ``llvm.sadd.sat`` (vpaddsw); k > 1
    adds ``k src`` in int32 lanes (|sum| < 2**21) and clips once, exact because k adds of one
    sign saturate monotonically."""

    def codegen(context, builder, sig, args):
        v16 = ir.VectorType(ir.IntType(16), I16_LANES)
        v32 = ir.VectorType(ir.IntType(32), I16_LANES)
        p_dst = _vector_pointer(context, builder, sig.args[0], args[0], args[1:2], sig.args[1:2], v16)
        p_src = _vector_pointer(context, builder, sig.args[2], args[2], args[3:4], sig.args[3:4], v16)
        a, b = builder.load(p_dst, align=2), builder.load(p_src, align=2)
        k32 = builder.trunc(context.cast(builder, args[4], sig.args[4], types.int64), ir.IntType(32))
        with builder.if_else(builder.icmp_signed("==", k32, ir.Constant(ir.IntType(32), 1))) as (one, many):
            with one:
                sadd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v16, [v16, v16]), "llvm.sadd.sat.v16i16")
                builder.store(builder.call(sadd, [a, b]), p_dst, align=2)
            with many:
                kv = builder.insert_element(ir.Constant(v32, ir.Undefined), k32, ir.Constant(ir.IntType(32), 0))
                kv = builder.shuffle_vector(kv, kv, ir.Constant(v32, [0] * I16_LANES))
                r = builder.add(builder.sext(a, v32), builder.mul(builder.sext(b, v32), kv))
                lo, hi = ir.Constant(v32, [S16_MIN] * I16_LANES), ir.Constant(v32, [S16_MAX] * I16_LANES)
                r = builder.select(builder.icmp_signed("<", r, lo), lo, r)
                r = builder.select(builder.icmp_signed(">", r, hi), hi, r)
                builder.store(builder.trunc(r, v16), p_dst, align=2)
        return context.get_dummy_value()

    return types.none(dst, d, src, s, k), codegen


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
def _deliver(isyn, k, W, start, lo, hi):
    """One event of count k > 0 from the row stored at ``W[start:]`` for columns lo..hi-1:
    ``isyn[j] = sat(isyn[j] + k w_j)``, one `_saturating_add16` per 16 columns. ``start - lo``
    may pass below 0; as unsigned integers the sum with ``c >= lo`` wraps back to the right
    index (looping over c from lo measured 5 % faster than from 0 on the trained network)."""
    b = start - U64(lo)
    for c in range(U64(lo), U64(hi), U64(I16_LANES)):
        _saturating_add16(isyn, c, W, b + c, k)


@njit(inline="always", **_JIT)
def _deliver_inputs(x, t, isyn, w_in, in_start, in_lo, in_hi, in_idx, in_cnt):
    """Step t's input events (counts clipped to 15) in channel order; returns (active inputs,
    whether any count was negative: those count as none, and the caller raises)."""
    n_act = 0
    negative = False
    for c in range(x.shape[1]):  # branch-free list of the active inputs: events are sparse, random
        k = min(x[t, c], 15)
        in_idx[n_act] = c
        in_cnt[n_act] = k
        n_act += 1 if k > 0 else 0
        negative |= k < 0
    for a in range(n_act):
        c = in_idx[a]
        _deliver(isyn, in_cnt[a], w_in, in_start[c], in_lo[c], in_hi[c])
    return n_act, negative


@njit(**_JIT)
def _special_neuron(S, isyn, j, thr, dm, bias, has_bias, n0, n_max):
    """Steps 3-4 in integers for a neuron the vectorized pass leaves alone (threshold <= 0,
    alias, v_mem_decay 0): from its new isyn and its old vmem in S, firing from count ``n0``;
    writes the new vmem and returns the spike count."""
    v = _membrane(np.int64(S[VMEM, j]), np.int64(isyn[j]), dm, bias, has_bias)
    n, v = _spike(v, thr, n0, n_max)
    S[VMEM, j] = v
    return n


@njit(**_JIT)
def _run_window(
    x, P, PO, w_in, in_start, in_lo, in_hi, w_rec, rec_start, rec_lo, rec_hi, w_out,
    thr, dm, bias, alias, has_alias, special, thr_o, dm_o, bias_o, special_o, has_bias, cyc_table, t_skip,
    out_spk, out_vmem, vmem_sum, hid_counts, hid_active, cycles,
):  # fmt: skip
    """One window from reset: x (T, Nin); writes out_spk/out_vmem (T, Nout), vmem_sum (Nout,):
    readout membrane summed over steps >= t_skip, hid_counts (Nhid,), and per step (T,)
    hid_active (hidden neurons that spiked) and cycles (``cyc_table[inputs, hidden]``, the
    cycles model looked up); returns whether an input count was negative.

    State: isyn in int16 (``isyn``, ``isyn_o``), vmem and this step's spike counts in
    integer-valued float32 rows of S (hidden) and SO (readout), exact as all are within int16.
    Order: step t+1's inputs are delivered at the end of step t, before its spikes, so that each
    spike is delivered as soon as the walk over the spike masks finds it: the chip's order
    (inputs, then spikes by ascending index) with no spike list in between.
    """
    n_t = x.shape[0]
    n_hid = thr.shape[0]
    n_out = thr_o.shape[0]
    nh = P.shape[1]  # padded to whole vectors
    no = PO.shape[1]
    oen0 = U64(n_hid - (w_out.shape[0] // no if no > 0 else 0))  # the first neuron that feeds the readout
    isyn = np.zeros(nh, np.int16)
    isyn_o = np.zeros(no, np.int16)
    S = np.zeros((N_ROWS, nh), np.float32)
    SO = np.zeros((N_ROWS, no), np.float32)
    saved = np.zeros(special.shape[0], np.float32)
    saved_o = np.zeros(special_o.shape[0], np.float32)
    alias_in = np.zeros(n_hid, np.int64)
    in_idx = np.zeros(x.shape[1] + 1, np.uint64)  # + 1: the branch-free append writes one past
    in_cnt = np.zeros(x.shape[1] + 1, np.int64)
    n_in_act, negative = _deliver_inputs(x, 0, isyn, w_in, in_start, in_lo, in_hi, in_idx, in_cnt)
    for t in range(n_t):
        # 1. isyn holds this step's delivery (inputs, then the spikes of step t-1)
        # 2-4. every hidden neuron at once, vectorized; CUR = -1 marks the special neurons
        _keep_vmem(S, special, saved)
        _neuron_pass(S, isyn, P, F32(31), has_bias)
        _mark_special(S, special, saved)
        if not has_alias:
            for a in range(special.shape[0]):
                j = special[a]
                S[CUR, j] = _special_neuron(S, isyn, j, thr[j], dm[j], bias[j], has_bias, 0, 31)
        else:  # all alias sources and targets are special, done in index order
            alias_in[:] = 0
            for j in range(n_hid):
                if S[CUR, j] < F32(0):
                    n = _special_neuron(S, isyn, j, thr[j], dm[j], bias[j], has_bias, alias_in[j], 31)
                    S[CUR, j] = n
                    a = alias[j]
                    if a >= 0:
                        if a <= j:  # the target has spiked already: add to its count
                            S[CUR, a] = min(S[CUR, a] + n, 31)
                        else:  # it starts from these spikes when its turn comes
                            alias_in[a] = min(alias_in[a] + n, 31)
        # 5. readout neurons, fed by the spikes of step t-1, vectorized the same way (cap 1)
        _keep_vmem(SO, special_o, saved_o)
        _neuron_pass(SO, isyn_o, PO, F32(1), has_bias)
        _mark_special(SO, special_o, saved_o)
        for o in range(n_out):
            c = SO[CUR, o]
            if c < F32(0):
                c = F32(_special_neuron(SO, isyn_o, o, thr_o[o], dm_o[o], bias_o[o], has_bias, 0, 1))
            out_spk[t, o] = np.int64(c)
            out_vmem[t, o] = np.int64(SO[VMEM, o])
            if t >= t_skip:
                vmem_sum[o] += np.int64(SO[VMEM, o])
        # step t+1's delivery: its inputs, then this step's spikes, found by walking the set bits
        # of 64-neuron masks of CUR (spikes are sparse: a branch per neuron would mispredict)
        n_in_this_step = n_in_act
        if t + 1 < n_t:
            n_in_act, neg = _deliver_inputs(x, t + 1, isyn, w_in, in_start, in_lo, in_hi, in_idx, in_cnt)
            negative |= neg
        n_spiking = 0
        for base in range(U64(0), U64(nh), U64(64)):  # unsigned: no negative-index wrap checks
            m = U64(0)
            for l in range(U64(0), min(U64(64), U64(nh) - base), U64(LANES)):
                m |= _nonzero_bits8(S, CUR, base + l) << l
            while m != U64(0):
                j = base + trailing_zeros(m)
                m &= m - U64(1)
                k = np.int64(S[CUR, j])
                n_spiking += 1
                hid_counts[j] += k
                _deliver(isyn, k, w_rec, rec_start[j], rec_lo[j], rec_hi[j])
                if j >= oen0:
                    _deliver(isyn_o, k, w_out, (j - oen0) * U64(no), 0, no)
        hid_active[t] = n_spiking
        cycles[t] = cyc_table[n_in_this_step, n_spiking]
    return negative


@njit(inline="always", **_JIT)
def _neuron_pass(S, isyn, P, n_max, has_bias):
    """Steps 2-4 for all neurons of one population, vectorized over 8 float32 lanes.

    ``isyn`` holds this step's delivery; the pass decays it in place, updates row ``VMEM`` and
    writes the spike count to ``CUR`` (`_mark_special` then undoes the membrane of the special
    neurons). Spikes: ``k = min(floor(max(v, 0) * rcp_up), n_max)`` (exact, see
    `reciprocal_up`), ``v -= k thr``. Every value is a whole number within int16, so float32
    holds it exactly and the int16 conversions are exact.
    """
    for j in range(S.shape[1]):
        s = F32(isyn[j])
        s = s - _decay_f(s, P[P_INV_DS, j])
        v0 = S[VMEM, j]
        d = _sat_f(s - _decay_f(v0, P[P_INV_DM, j]))
        if has_bias:  # loop-invariant
            d = _sat_f(d + P[P_BIAS, j])
        v = _sat_f(v0 + d)
        k = min(np.floor(max(v, F32(0)) * P[P_RCP, j]), n_max)
        v = v - k * P[P_THR, j]
        isyn[j] = np.int16(s)
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
    x, P, PO, w_in, in_start, in_lo, in_hi, w_rec, rec_start, rec_lo, rec_hi, w_out,
    thr, dm, bias, alias, has_alias, special, thr_o, dm_o, bias_o, special_o, has_bias, cyc_table, t_skip,
    out_spk, out_vmem, vmem_sum, hid_counts, hid_active, cycles, negative,
):  # fmt: skip
    """All windows, in parallel over the window axis; ``negative[b]``: window b had a negative count."""
    for b in prange(x.shape[0]):
        negative[b] = _run_window(
            x[b], P, PO, w_in, in_start, in_lo, in_hi, w_rec, rec_start, rec_lo, rec_hi, w_out,
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
        x, p.P, p.PO, p.w_in, p.in_start, p.in_lo, p.in_hi, p.w_rec, p.rec_start, p.rec_lo, p.rec_hi, p.w_out,
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
