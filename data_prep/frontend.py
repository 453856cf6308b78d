"""Xylo IMU interface (IMUIF) front end, bit-exact to Rockpool 3.1.0's integer model, vectorized.

Accelerometer in g at 200 Hz  ->  (N, T, 15) event counts per 5 ms step, as the chip computes them:

    g --quantize_acc--> int16 samples --filter_bank--> 15 int band signals --encode--> counts 0..15

Sources (rockpool/devices/xylo/syns63300): ``imuif/filterbank.py`` (``BandPassFilter``,
``FilterBank``), ``imuif/spike_encoder.py`` (``ScaleSpikeEncoder``, ``IAFSpikeEncoder``),
``imuif/params.py`` (bit widths), ``imuif_sim.py`` (``IMUIFSim``: order of the stages, channel
order), ``imu_data.py`` (sensor scale). Agreement with ``IMUIFSim`` is tested bit for bit in
``tests/test_frontend.py``.

Facts used here
---------------
* Sensor scale: Rockpool's ``IMUData`` decodes the HDK's MC3632 samples as ``g = raw * 4 / 2**14``,
  i.e. **4096 LSB per g**. The IMUIF takes 16-bit sign-magnitude samples (``NUM_BITS = 16``;
  ``compute_AR`` refuses ``|x| > 2**15 - 1``), so ``quantize_acc`` rounds ``g * 4096`` to the
  nearest integer and saturates at +-32767 (= +-7.9998 g).
* Channel order (``FilterBank._channel_mapping``, ``IMUIFSim`` doc): axis-major,
  ``channel = 5 * axis + band``: channels 0-4 filter x, 5-9 y, 10-14 z; the filter list has one
  entry per channel (15 registers), and ``FrontEndSettings`` repeats its 5 bands on each axis.
* Encoders: scale encoder ``min(|y| >> shift, 15)`` with a 5-bit shift (0..31); IAF encoder
  with a 31-bit unsigned threshold (1..2**31-1 here: 0 would divide by zero in Rockpool) that
  emits **at most 1 event per step** (Rockpool clips the per-step spike count to 1).
* Rotation removal (JSVD) is not modelled: ``rotation_removal=True`` raises
  `RotationRemovalNotSupported` when the front end is run (``IMUIFSim(bypass_jsvd=True)`` is what
  this module reproduces).

Rockpool's ``FilterBank.evolve`` filters each call's input preceded by its own time reversal
("to avoid boundary effects"); the chip has no such thing. Warm-up ``"mirror"`` reproduces
that (used to check against ``IMUIFSim``); ``run_stream`` starts from rest as the chip does;
``"hold"`` starts each window as if the device had rested in the window's first orientation.

Performance: the integer recurrence is one numpy loop over time on (batch, 15) arrays, so its
cost is per step, almost independent of the batch: batch windows or recordings together
(`filter_windows`, `filter_streams`). A single stream cannot be split into segments filtered
side by side: checked on the 0.1-1 Hz filter, two runs started from different states keep
differing by a few LSB of the AR register for tens of thousands of steps. For a constant input
every w in an interval of 2**15 / (2**15 + a1 + a2) values (~10,900 for that filter) is a
fixed point of the truncating recurrence, so differences need not die out: the chip's output
depends, by a hair, on all of its history.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
from scipy.signal import butter

from aspen_deploy import chip

# ---------------------------------------------------------------------------- chip constants
# (IMUIF registers; candidates to move into aspen_deploy/chip.py, the one table of chip limits)
FS_HZ = float(chip.IMU_FS_HZ)
N_AXES = chip.IMU_AXES
N_BANDS = chip.IMU_FILTERS_PER_AXIS
N_CHANNELS = chip.IMU_CHANNELS
ACC_LSB_PER_G = 4096.0  # MC3632 on the Xylo IMU HDK, as Rockpool's IMUData decodes it
NUM_BITS = 16  # IMUIF input: 16-bit sign-magnitude
ACC_INT_MAX = 2 ** (NUM_BITS - 1) - 1  # 32767
B_WORST_CASE = 9  # extra filter register bits (Rockpool params.py)
FILTER_FIELD_BITS = 4  # B_b, B_wf, B_af are 4-bit unsigned registers
TAP_BITS = 17  # a1, a2 are 17-bit signed registers
TAP_MIN, TAP_MAX = -(2 ** (TAP_BITS - 1)), 2 ** (TAP_BITS - 1) - 1
SCALE_SHIFT_MIN, SCALE_SHIFT_MAX = 0, 31  # 5-bit unsigned
IAF_THRESHOLD_MIN, IAF_THRESHOLD_MAX = 1, 2**31 - 1  # 31-bit unsigned, 0 excluded
MAX_COUNT = chip.MAX_INPUT_COUNT  # 15 = 2**NUM_BITS_SPIKE - 1
IAF_MAX_EVENTS_PER_STEP = 1
ROCKPOOL_DEFAULT_IAF_THRESHOLD = 1024
ROCKPOOL_DEFAULT_SCALE_SHIFT = 5

DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.1, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0))
CHIP_DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0))
CHANNEL_ORDER = "axis-major: channel = 5 * axis + band (0-4 x, 5-9 y, 10-14 z)"
ENCODER_KINDS = ("iaf", "scale")
WARMUPS = ("hold", "rest", "mirror")

# Bound on elements of one working block (keeps temporaries at tens of MB).
_BLOCK_ELEMS = 1 << 21


class FrontEndError(ValueError):
    """Bad front-end input or settings; the message says what is wrong and how to fix it."""


class FilterOverflowError(FrontEndError):
    """A filter register left its bit width (Rockpool raises here too); the filter is unstable."""


class RotationRemovalNotSupported(NotImplementedError):
    """The IMUIF rotation-removal stage (JSVD) is not modelled by this front end."""


# ---------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class BandPassParams:
    """Integer registers of one IMUIF band-pass filter (Rockpool's ``BandPassFilter``)."""

    B_b: int
    B_wf: int
    B_af: int
    a1: int
    a2: int

    def __post_init__(self) -> None:
        for name in ("B_b", "B_wf", "B_af"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not 0 <= v < 2**FILTER_FIELD_BITS:
                raise FrontEndError(f"filter {name}={v!r} must be an integer in 0..{2**FILTER_FIELD_BITS - 1}")
        for name in ("a1", "a2"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or not TAP_MIN <= v <= TAP_MAX:
                raise FrontEndError(
                    f"filter tap {name}={v!r} must be an integer in {TAP_MIN}..{TAP_MAX} (17-bit signed)"
                )
        for name in ("B_b", "B_wf", "B_af", "a1", "a2"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def to_dict(self) -> dict[str, int]:
        return {"B_b": self.B_b, "B_wf": self.B_wf, "B_af": self.B_af, "a1": self.a1, "a2": self.a2}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BandPassParams":
        keys = ("B_b", "B_wf", "B_af", "a1", "a2")
        missing = [k for k in keys if k not in d]
        if missing:
            raise FrontEndError(f"filter entry {dict(d)!r} lacks {missing}; each filter needs {list(keys)}")
        return cls(**{k: d[k] for k in keys})


@functools.lru_cache(maxsize=256)  # FrontEndSettings.bank() asks again for every streamed chunk
def design_bandpass(low_hz: float, high_hz: float, fs: float = FS_HZ) -> BandPassParams:
    """Chip registers for a first-order Butterworth band-pass (Rockpool's ``from_specification``).

    ``b, a = butter(1, (low, high), "bandpass", fs=fs)``; b = b0 [1, 0, -1];
    ``B_b = int(log2(1 / b0))``, ``B_wf = B_WORST_CASE - 1``, ``B_af = NUM_BITS - B_b - 1``,
    ``a_k = trunc(2**(B_af + B_b) * a[k])`` (toward zero, as ``astype(int64)``).
    The gain 2**-B_b replaces b0, so outputs are the float filter's divided by
    ``scale_out = b0 * 2**B_b`` (in [0.5, 1)). Refuses bands whose quantized taps put a pole on
    or outside the unit circle (too narrow/too low for 15-bit taps).
    """
    low, high = float(low_hz), float(high_hz)
    if not (math.isfinite(low) and math.isfinite(high)) or not 0.0 < low < high < fs / 2:
        raise FrontEndError(
            f"band ({low_hz}, {high_hz}) Hz is invalid: need 0 < low < high < {fs / 2:g} Hz (Nyquist at fs={fs:g} Hz)"
        )
    b, a = butter(N=1, Wn=(low, high), btype="bandpass", analog=False, output="ba", fs=fs)
    b_norm = b / abs(b[0])
    if min(np.linalg.norm(b_norm - [1, 0, -1]), np.linalg.norm(b_norm + [1, 0, -1])) > 1e-3:
        raise FrontEndError(f"band ({low}, {high}) Hz does not give the chip's MA form b0 [1, 0, -1]")
    B_b = int(np.log2(1 / abs(b[0])))
    B_af = NUM_BITS - B_b - 1
    if not (0 <= B_b < 2**FILTER_FIELD_BITS and B_af >= 0):
        raise FrontEndError(f"band ({low}, {high}) Hz is too narrow for the chip (B_b={B_b}); widen it")
    taps = (2 ** (B_af + B_b) * a).astype(np.int64)
    params = BandPassParams(B_b=B_b, B_wf=B_WORST_CASE - 1, B_af=B_af, a1=int(taps[1]), a2=int(taps[2]))
    if not np.isfinite(_pole_time_constant(params)):
        raise FrontEndError(
            f"band ({low}, {high}) Hz quantizes to taps a1={params.a1}, a2={params.a2} with a pole on the unit "
            "circle (the filter would integrate gravity and overflow); raise the low cut-off"
        )
    return params


def _pole_time_constant(p: BandPassParams) -> float:
    """Steps for the slowest pole of ``z^2 + a1/S z + a2/S`` (S = 2**(B_af+B_b)) to decay by e."""
    s = 2.0 ** (p.B_af + p.B_b)
    r = float(np.max(np.abs(np.roots([1.0, p.a1 / s, p.a2 / s]))))
    return math.inf if r >= 1.0 else (0.0 if r == 0.0 else -1.0 / math.log(r))


@dataclass(frozen=True, eq=False)
class FilterBank:
    """The 15 filters as per-channel int64 register vectors, plus the input axis of each channel."""

    params: tuple[BandPassParams, ...]
    B_b: np.ndarray = field(init=False, repr=False)
    B_wf: np.ndarray = field(init=False, repr=False)
    B_af: np.ndarray = field(init=False, repr=False)
    a1: np.ndarray = field(init=False, repr=False)
    a2: np.ndarray = field(init=False, repr=False)
    axis: np.ndarray = field(init=False, repr=False)
    overflow_free: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.params) != N_CHANNELS:
            raise FrontEndError(
                f"a filter bank needs {N_CHANNELS} filters (5 per axis, axis-major), got {len(self.params)}"
            )
        for name in ("B_b", "B_wf", "B_af", "a1", "a2"):
            object.__setattr__(self, name, np.array([getattr(p, name) for p in self.params], dtype=np.int64))
        object.__setattr__(self, "axis", np.arange(N_CHANNELS) // N_BANDS)
        object.__setattr__(self, "overflow_free", all(_overflow_free(p) for p in self.params))

    @property
    def w_limit(self) -> np.ndarray:
        """Largest |w| the AR register holds: 2**(B_w - 1) - 1, B_w = NUM_BITS + B_WORST_CASE + B_wf."""
        return (1 << (NUM_BITS + B_WORST_CASE - 1 + self.B_wf)) - 1


Y_LIMIT = (1 << (NUM_BITS + B_WORST_CASE - 1)) - 1  # |filter output| < 2**24 (B_out = 25 bits)


@functools.lru_cache(maxsize=256)  # a proof per register set, not per FilterBank built
def _overflow_free(p: BandPassParams) -> bool:
    """Proof that no input within +-32767 can overflow the filter's registers (then the
    run-time range checks are skipped).

    The AR step is ``w[n] = (X[n] - a1 w[n-1] - a2 w[n-2]) / S - e[n]``, S = 2**(B_af+B_b),
    X = x << (B_wf + B_af), truncation ``e`` in [0, 1). So w = h * (X/S - e) with h the impulse
    response of ``1 / (1 + a1/S z^-1 + a2/S z^-2)``, and
    ``|w| <= ||h||_1 (max|X|/S + 1)``, ``|w[n] - w[n-2]| <= ||h - z^-2 h||_1 (max|X|/S + 1)``.
    The norms are summed over 60 time constants (the rest is < e**-60 of them), with 1 % margin.
    """
    from scipy.signal import lfilter

    tau = _pole_time_constant(p)
    if not math.isfinite(tau):
        return False
    S = 2.0 ** (p.B_af + p.B_b)
    n = int(60 * tau) + 64
    imp = np.zeros(n)
    imp[0] = 1.0
    h = lfilter([1.0], [1.0, p.a1 / S, p.a2 / S], imp)
    g = h.copy()
    g[2:] -= h[:-2]
    drive = ACC_INT_MAX * 2.0 ** (p.B_wf + p.B_af) / S + 1.0
    w_max = 1.01 * np.abs(h).sum() * drive
    y_max = 1.01 * np.abs(g).sum() * drive / 2.0**p.B_wf + 1.0
    w_limit = 2.0 ** (NUM_BITS + B_WORST_CASE - 1 + p.B_wf) - 1
    return bool(w_max <= w_limit and y_max <= Y_LIMIT)


@dataclass
class FilterState:
    """AR registers ``w[n-1]``, ``w[n-2]`` per (batch, channel), int64; zeros = at rest."""

    w1: np.ndarray
    w2: np.ndarray


def init_state(batch: int) -> FilterState:
    """Filters at rest (what the chip has at power-up) for ``batch`` independent streams."""
    if int(batch) < 1:
        raise FrontEndError(f"batch must be >= 1, got {batch}")
    z = np.zeros((int(batch), N_CHANNELS), dtype=np.int64)
    return FilterState(z, z.copy())


def quantize_acc(acc_g: np.ndarray, lsb_per_g: float = ACC_LSB_PER_G) -> np.ndarray:
    """g -> the IMUIF's integer samples: ``clip(rint(g * lsb_per_g), -32767, 32767)`` as int64.

    Saturates at +-32767, the IMUIF's 16-bit sign-magnitude range (+-7.9998 g at 4096 LSB/g);
    rint rounds half to even.
    """
    a = np.asarray(acc_g, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise FrontEndError("acceleration contains NaN or inf; interpolate or drop those samples first")
    return np.clip(np.rint(a * float(lsb_per_g)), -ACC_INT_MAX, ACC_INT_MAX).astype(np.int64)


def _check_acc_int(acc_int: np.ndarray) -> np.ndarray:
    a = np.asarray(acc_int)
    if a.ndim != 3 or a.shape[2] != N_AXES:
        raise FrontEndError(f"integer acceleration must be (batch, T, 3), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise FrontEndError(f"integer acceleration must have an integer dtype, got {a.dtype}; use quantize_acc(g)")
    if a.size and (int(a.max()) > ACC_INT_MAX or int(a.min()) < -ACC_INT_MAX):
        raise FrontEndError(f"integer acceleration exceeds +-{ACC_INT_MAX} (16-bit sign-magnitude); use quantize_acc")
    return a.astype(np.int64, copy=False)


def _ar_run(xs: np.ndarray, hist: np.ndarray, bank: FilterBank) -> None:
    """AR part over ``xs`` (n, B, C) = ``x << (B_wf + B_af)``, in place in ``hist`` (n+2, B, C).

    ``hist[0]``, ``hist[1]`` hold the state ``w[-2]``, ``w[-1]``; ``hist[t+2]`` receives ``w[t]``.
    Rockpool's ``compute_AR`` step

        w[n] = ( (x[n] << B_wf) + ((-a1 w[n-1] - a2 w[n-2]) >> B_af) ) >> B_b

    is computed as ``(-a2 w[n-2] - a1 w[n-1] + (x[n] << (B_wf + B_af))) >> (B_af + B_b)``: for
    integers, ``floor((floor(A / 2^p) + X) / 2^q) = floor((A + X 2^p) / 2^(p+q))``, so this is the
    same integer with fewer numpy calls per step (the per-step call overhead is the cost for
    small batches). |a w| < 2**51 fits int64.
    """
    coef = np.stack([-bank.a2, -bank.a1])[:, None, :]  # multiplies hist[t : t+2] = (w[n-2], w[n-1])
    shift = bank.B_af + bank.B_b
    prod = np.empty((2,) + hist.shape[1:], dtype=np.int64)
    p0, p1 = prod[0], prod[1]
    mul, add, rshift = np.multiply, np.add, np.right_shift
    for t in range(xs.shape[0]):
        mul(hist[t : t + 2], coef, out=prod)
        o = hist[t + 2]
        add(p0, p1, out=o)
        add(o, xs[t], out=o)
        rshift(o, shift, out=o)


def _check_w(w: np.ndarray, bank: FilterBank) -> None:
    if not w.size:
        return
    axes = tuple(range(w.ndim - 1))
    peak = np.maximum(w.max(axis=axes), -w.min(axis=axes))
    bad = np.nonzero(peak > bank.w_limit)[0]
    if bad.size:
        c = int(bad[0])
        raise FilterOverflowError(
            f"filter of channel {c} (axis {c // N_BANDS}, band {c % N_BANDS}) overflowed its "
            f"{NUM_BITS + B_WORST_CASE + int(bank.B_wf[c])}-bit AR register (|w| = {int(peak[c])}); "
            "its taps are unstable: redesign the band with design_bandpass"
        )


def _filter_sequential(acc: np.ndarray, bank: FilterBank, state: FilterState) -> tuple[np.ndarray, FilterState]:
    """One pass over time in blocks; int32 outputs (B, T, C)."""
    B, T, _ = acc.shape
    out = np.empty((B, T, N_CHANNELS), dtype=np.int32)
    n_blk = max(1, min(T, _BLOCK_ELEMS // max(1, B * N_CHANNELS)))
    bwf, xshift = bank.B_wf, bank.B_wf + bank.B_af
    hist = np.empty((n_blk + 2, B, N_CHANNELS), dtype=np.int64)
    hist[0], hist[1] = state.w2, state.w1
    ybuf = np.empty((n_blk, B, N_CHANNELS), dtype=np.int64)
    for t0 in range(0, T, n_blk):
        t1 = min(T, t0 + n_blk)
        n = t1 - t0
        # time-major block: each step one contiguous (B, C) slab; channel c reads axis c // 5
        xs = np.ascontiguousarray(acc[:, t0:t1].transpose(1, 0, 2))[:, :, bank.axis]
        np.left_shift(xs, xshift, out=xs)
        w = hist[: n + 2]
        _ar_run(xs, w, bank)
        # MA part: y[n] = (w[n] - w[n-2]) >> B_wf
        y = np.subtract(w[2:], w[:-2], out=ybuf[:n])
        np.right_shift(y, bwf, out=y)
        if not bank.overflow_free:  # Rockpool's range checks, needed only for unproven taps
            _check_w(w[2:], bank)
            if int(y.max()) > Y_LIMIT or int(y.min()) < -Y_LIMIT:
                raise FilterOverflowError(
                    f"filter output exceeded {NUM_BITS + B_WORST_CASE} bits; the taps are unstable"
                )
        out[:, t0:t1] = y.transpose(1, 0, 2)
        hist[0], hist[1] = w[n].copy(), w[n + 1].copy()
    w2, w1 = hist[0].copy(), hist[1].copy()
    return out, FilterState(w1, w2)


def filter_bank(
    acc_int: np.ndarray, bank: FilterBank, state: FilterState | None = None
) -> tuple[np.ndarray, FilterState]:
    """Run the 15 integer band-pass filters over ``acc_int`` (B, T, 3); returns int32 (B, T, 15).

    Per channel c on axis ``c // 5`` (Rockpool ``BandPassFilter.compute_AR`` / ``compute_MA``):

        w[n] = ( (x[n] << B_wf) + ((-a1 w[n-1] - a2 w[n-2]) >> B_af) ) >> B_b
        y[n] = (w[n] - w[n-2]) >> B_wf

    (``>>`` is arithmetic, i.e. floor, as on Python ints.) Starts from ``state`` (default: rest)
    and returns the state after the last sample, so a stream processed in chunks gives the
    same result as one call. Cost: one loop over T of a few numpy calls on (B, 15) arrays, so
    batch many streams/windows together.
    """
    acc = _check_acc_int(acc_int)
    B = acc.shape[0]
    state = init_state(B) if state is None else state
    if state.w1.shape != (B, N_CHANNELS) or state.w2.shape != (B, N_CHANNELS):
        raise FrontEndError(f"filter state has shape {state.w1.shape} but the input batch is {B}; use init_state({B})")
    return _filter_sequential(acc, bank, state)


# ---------------------------------------------------------------------------- encoders
@dataclass(frozen=True)
class EncoderSettings:
    """The IMUIF spike encoder: ``kind`` "iaf" (``values`` = 15 thresholds) or "scale" (15 shifts)."""

    kind: Literal["iaf", "scale"] = "iaf"
    values: tuple[int, ...] | None = None  # None: Rockpool's default (threshold 1024 / shift 5)

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise FrontEndError(f"encoder kind {self.kind!r} is not one of {ENCODER_KINDS}")
        if self.values is None:
            default = ROCKPOOL_DEFAULT_IAF_THRESHOLD if self.kind == "iaf" else ROCKPOOL_DEFAULT_SCALE_SHIFT
            object.__setattr__(self, "values", (default,) * N_CHANNELS)
        vals = tuple(self.values) if isinstance(self.values, Iterable) else (self.values,)
        if len(vals) == 1:
            vals = vals * N_CHANNELS
        if len(vals) != N_CHANNELS:
            raise FrontEndError(
                f"the {self.kind} encoder needs {N_CHANNELS} per-channel values (or one), got {len(vals)}"
            )
        lo, hi = (IAF_THRESHOLD_MIN, IAF_THRESHOLD_MAX) if self.kind == "iaf" else (SCALE_SHIFT_MIN, SCALE_SHIFT_MAX)
        what = "threshold" if self.kind == "iaf" else "shift"
        for c, v in enumerate(vals):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise FrontEndError(
                    f"{self.kind} encoder {what} of channel {c} is {v!r}; it must be an integer in {lo}..{hi}"
                )
        object.__setattr__(self, "values", tuple(int(v) for v in vals))

    @classmethod
    def iaf(cls, thresholds: int | Sequence[int] = ROCKPOOL_DEFAULT_IAF_THRESHOLD) -> "EncoderSettings":
        return cls("iaf", tuple(np.atleast_1d(thresholds).tolist()))

    @classmethod
    def scale(cls, shifts: int | Sequence[int] = ROCKPOOL_DEFAULT_SCALE_SHIFT) -> "EncoderSettings":
        return cls("scale", tuple(np.atleast_1d(shifts).tolist()))

    @property
    def key(self) -> str:
        """The JSON key of the per-channel values: "thresholds" or "shifts"."""
        return "thresholds" if self.kind == "iaf" else "shifts"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, self.key: list(self.values)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EncoderSettings":
        kind = d.get("kind")
        if kind not in ENCODER_KINDS:
            raise FrontEndError(f"imu_if.encoder.kind must be one of {ENCODER_KINDS}, got {kind!r}")
        key = "thresholds" if kind == "iaf" else "shifts"
        if key not in d:
            raise FrontEndError(f"imu_if.encoder of kind {kind!r} needs a list {key!r} of {N_CHANNELS} integers")
        return cls(kind, tuple(d[key]))


@dataclass
class EncoderState:
    """IAF integrator residues per (batch, channel), int64 in [0, threshold); unused by "scale"."""

    residual: np.ndarray

    def copy(self) -> "EncoderState":
        return EncoderState(self.residual.copy())


def init_encoder_state(batch: int) -> EncoderState:
    """Encoder at power-up: empty integrators."""
    if int(batch) < 1:
        raise FrontEndError(f"batch must be >= 1, got {batch}")
    return EncoderState(np.zeros((int(batch), N_CHANNELS), dtype=np.int64))


def _check_filtered(filtered: np.ndarray) -> np.ndarray:
    y = np.asarray(filtered)
    if y.ndim != 3 or y.shape[2] != N_CHANNELS:
        raise FrontEndError(f"filter outputs must be (batch, T, {N_CHANNELS}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise FrontEndError(f"filter outputs must be integers (from filter_bank), got dtype {y.dtype}")
    return y


def encode(
    filtered: np.ndarray, encoder: EncoderSettings, state: EncoderState | None = None
) -> tuple[np.ndarray, EncoderState]:
    """Filter outputs (B, T, 15) -> event counts uint8 (B, T, 15), and the encoder state after T.

    Scale encoder (``ScaleSpikeEncoder``): ``count = min(|y| >> shift_c, 15)``; no state.
    IAF encoder (``IAFSpikeEncoder``): ``s[t] = s0 + sum_{n<=t} |y[n]|``,
    ``count[t] = min(floor(s[t] / th_c) - floor(s[t-1] / th_c), 1)``: the integrator loses
    ``th_c`` per crossing but at most 1 event per step leaves (extra crossings are dropped,
    as in Rockpool). The state kept is the residue ``s mod th_c``, which gives the same counts
    as Rockpool's running sum for a stream cut into chunks.
    """
    y = _check_filtered(filtered)
    B, T, _ = y.shape
    state = init_encoder_state(B) if state is None else state
    if state.residual.shape != (B, N_CHANNELS):
        raise FrontEndError(
            f"encoder state has shape {state.residual.shape}, input batch is {B}; use init_encoder_state({B})"
        )
    vals = np.asarray(encoder.values, dtype=np.int64)
    counts = np.empty((B, T, N_CHANNELS), dtype=np.uint8)
    if encoder.kind == "scale":
        for b0, b1 in _batch_blocks(B, T):
            a = np.abs(y[b0:b1].astype(np.int64)) >> vals
            np.minimum(a, MAX_COUNT, out=a)
            counts[b0:b1] = a
        return counts, state.copy()
    residual = state.residual.copy()
    n_t = max(1, _BLOCK_ELEMS // max(1, B * N_CHANNELS))
    for t0 in range(0, T, n_t):  # time blocks, carrying the residue (streams can be long)
        s = np.cumsum(np.abs(y[:, t0 : t0 + n_t].astype(np.int64)), axis=1)
        s += residual[:, None, :]
        n = s // vals
        counts[:, t0 : t0 + n_t] = np.minimum(np.diff(n, axis=1, prepend=0), IAF_MAX_EVENTS_PER_STEP)
        residual = s[:, -1] - n[:, -1] * vals
    return counts, EncoderState(residual)


def _batch_blocks(B: int, T: int) -> list[tuple[int, int]]:
    nb = max(1, _BLOCK_ELEMS // max(1, T * N_CHANNELS))
    return [(b, min(B, b + nb)) for b in range(0, B, nb)]


# ---------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class FrontEndSettings:
    """Everything the IMUIF needs, in the chip's terms.

    ``bands``: 5 (low, high) Hz pass bands, used on each axis (channel = 5 * axis + band).
    ``filters``: optional explicit 15 filter registers that override the design from ``bands``
    (e.g. hand-tuned or read back from a chip); ``bands`` is then only descriptive.
    ``encoder``: kind and per-channel thresholds/shifts. ``rotation_removal``: the chip's JSVD
    stage; not modelled (running with True raises `RotationRemovalNotSupported`).
    ``lsb_per_g``: sensor scale used by `quantize_acc`.
    """

    bands: tuple[tuple[float, float], ...] = DEFAULT_BANDS
    encoder: EncoderSettings = field(default_factory=EncoderSettings)
    rotation_removal: bool = False
    filters: tuple[BandPassParams, ...] | None = None
    lsb_per_g: float = ACC_LSB_PER_G

    def __post_init__(self) -> None:
        try:
            bands = tuple((float(lo), float(hi)) for lo, hi in self.bands)
        except (TypeError, ValueError) as e:
            raise FrontEndError(f"bands must be {N_BANDS} (low, high) Hz pairs, got {self.bands!r}") from e
        if len(bands) != N_BANDS:
            raise FrontEndError(
                f"bands must be {N_BANDS} (low, high) Hz pairs (one per filter of an axis), got {len(bands)}"
            )
        object.__setattr__(self, "bands", bands)
        if not isinstance(self.encoder, EncoderSettings):
            raise FrontEndError(f"encoder must be an EncoderSettings, got {type(self.encoder).__name__}")
        if not isinstance(self.rotation_removal, (bool, np.bool_)):
            raise FrontEndError(f"rotation_removal must be a bool, got {self.rotation_removal!r}")
        object.__setattr__(self, "rotation_removal", bool(self.rotation_removal))
        if not (math.isfinite(float(self.lsb_per_g)) and float(self.lsb_per_g) > 0):
            raise FrontEndError(f"lsb_per_g must be a positive number, got {self.lsb_per_g!r}")
        if self.filters is not None:
            f = tuple(self.filters)
            if len(f) == N_BANDS:
                f = f * N_AXES
            if len(f) != N_CHANNELS or not all(isinstance(p, BandPassParams) for p in f):
                raise FrontEndError(f"filters must be {N_CHANNELS} (or {N_BANDS}, repeated per axis) BandPassParams")
            object.__setattr__(self, "filters", f)
        else:
            for lo, hi in bands:
                design_bandpass(lo, hi)  # fail early on an impossible band

    def filter_params(self) -> tuple[BandPassParams, ...]:
        """The 15 filter registers, axis-major."""
        if self.filters is not None:
            return self.filters
        return tuple(design_bandpass(lo, hi) for lo, hi in self.bands) * N_AXES

    def bank(self) -> FilterBank:
        return FilterBank(self.filter_params())

    def with_encoder(self, encoder: EncoderSettings) -> "FrontEndSettings":
        return replace(self, encoder=encoder)

    def to_dict(self) -> dict[str, Any]:
        """The ``imu_if`` section of ``xylo_config.json`` (chip integers, plus the bands for people)."""
        return {
            "bands_hz": [[lo, hi] for lo, hi in self.bands],
            "channel_order": CHANNEL_ORDER,
            "filters": [p.to_dict() for p in self.filter_params()],
            "encoder": self.encoder.to_dict(),
            "rotation_removal": self.rotation_removal,
            "lsb_per_g": float(self.lsb_per_g),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FrontEndSettings":
        """Inverse of `to_dict`. ``filters`` (15, or 5 repeated per axis) are authoritative: when
        they differ from the design of ``bands_hz`` they are kept as explicit registers."""
        if not isinstance(d, Mapping):
            raise FrontEndError(f"imu_if must be a JSON object, got {type(d).__name__}")
        for key in ("bands_hz", "encoder"):
            if key not in d:
                raise FrontEndError(f"imu_if lacks {key!r}; write it with FrontEndSettings.to_dict()")
        try:
            bands = tuple(tuple(b) for b in d["bands_hz"])
            raw_filters = None if d.get("filters") is None else [dict(f) for f in d["filters"]]
            if not isinstance(d["encoder"], Mapping):
                raise TypeError("imu_if.encoder is not an object")
        except (TypeError, ValueError) as e:
            raise FrontEndError(
                f"imu_if is malformed ({e}); bands_hz must be [low, high] pairs, filters a list of objects "
                "with B_b, B_wf, B_af, a1, a2, encoder an object"
            ) from e
        if any(len(b) != 2 for b in bands):
            raise FrontEndError(f"imu_if.bands_hz must be [low, high] pairs, got {d['bands_hz']!r}")
        filters = None
        if raw_filters is not None:
            filters = tuple(BandPassParams.from_dict(f) for f in raw_filters)
            if len(filters) == N_BANDS:
                filters = filters * N_AXES
            try:
                designed = tuple(design_bandpass(lo, hi) for lo, hi in bands) * N_AXES
            except FrontEndError:
                designed = None
            if filters == designed:
                filters = None
        return cls(
            bands=bands,  # type: ignore[arg-type]
            encoder=EncoderSettings.from_dict(d["encoder"]),
            rotation_removal=d.get("rotation_removal", False),
            filters=filters,
            lsb_per_g=d.get("lsb_per_g", ACC_LSB_PER_G),
        )


def _check_runnable(settings: FrontEndSettings) -> None:
    if settings.rotation_removal:
        raise RotationRemovalNotSupported(
            "rotation_removal=True: the IMUIF rotation-removal (JSVD) stage is not modelled by "
            "data_prep.frontend; set rotation_removal=False (the chip's bypass_jsvd=True)"
        )


# ---------------------------------------------------------------------------- streams
def _as_stream(acc_g: np.ndarray) -> np.ndarray:
    a = np.asarray(acc_g)
    if a.ndim != 2 or a.shape[1] != N_AXES:
        raise FrontEndError(f"a stream must be (L, 3) acceleration in g at 200 Hz, got shape {a.shape}")
    return a


def filter_stream(acc_g: np.ndarray, settings: FrontEndSettings) -> np.ndarray:
    """A whole recording (L, 3) in g at 200 Hz, filters from rest -> int32 (L, 15)."""
    _check_runnable(settings)
    x = quantize_acc(_as_stream(acc_g), settings.lsb_per_g)[None]
    return filter_bank(x, settings.bank())[0][0]


def run_stream(acc_g: np.ndarray, settings: FrontEndSettings) -> np.ndarray:
    """A whole recording (L, 3) in g at 200 Hz from rest -> counts uint8 (L, 15), as the chip
    sees it: filters and encoder never reset between windows."""
    return encode(filter_stream(acc_g, settings)[None], settings.encoder)[0][0]


def filter_streams(recordings: Sequence[np.ndarray], settings: FrontEndSettings) -> list[np.ndarray]:
    """`filter_stream` for several recordings at once (batched; each from rest; same result)."""
    _check_runnable(settings)
    recs = [_as_stream(r) for r in recordings]
    if not recs:
        return []
    lengths = [len(r) for r in recs]
    x = np.zeros((len(recs), max(lengths), N_AXES), dtype=np.int64)
    for i, r in enumerate(recs):
        x[i, : len(r)] = quantize_acc(r, settings.lsb_per_g)  # zero padding after the end is harmless
    y, _ = filter_bank(x, settings.bank())
    return [y[i, :n] for i, n in enumerate(lengths)]  # contiguous views of one array


def run_streams(recordings: Sequence[np.ndarray], settings: FrontEndSettings) -> list[np.ndarray]:
    """`run_stream` for several recordings at once -> list of uint8 (L_i, 15)."""
    return [encode(y[None], settings.encoder)[0][0] for y in filter_streams(recordings, settings)]


@dataclass
class StreamState:
    """Filter and encoder state of a running front end (for chunked streaming)."""

    filters: FilterState
    encoder: EncoderState


def run_stream_chunk(
    acc_g: np.ndarray, settings: FrontEndSettings, state: StreamState | None = None
) -> tuple[np.ndarray, StreamState]:
    """The next chunk (L, 3) g of a stream -> counts (L, 15) and the state to pass with the next."""
    _check_runnable(settings)
    x = quantize_acc(_as_stream(acc_g), settings.lsb_per_g)[None]
    state = StreamState(init_state(1), init_encoder_state(1)) if state is None else state
    y, fs = filter_bank(x, settings.bank(), state.filters)
    c, es = encode(y, settings.encoder, state.encoder)
    return c[0], StreamState(fs, es)


# ---------------------------------------------------------------------------- windows
def hold_state(x0_int: np.ndarray, bank: FilterBank, hold_steps: int = 400) -> FilterState:
    """Filter state of a device that has rested at sample ``x0_int`` (B, 3): no transient left.

    For constant input the AR step is ``w' = (X - (a1 + a2) w) >> S`` with
    ``X = x << (B_wf + B_af)``, ``S = B_af + B_b``. With ``den = 2**S + a1 + a2`` (> 0 for a
    stable filter), ``w* = floor(X / den)`` is an exact fixed point of the integer recurrence:
    ``X - (a1 + a2) w* = 2**S w* + (X - den w*)`` and ``0 <= X - den w* < den < 2**S``. The
    state is (w*, w*), whose output is 0. (The 0.1 Hz pole would need ~2,500 steps to get there
    from rest; 2 s of held input is not enough.) Channels where that check fails (den <= 0,
    only for explicit unstable registers) are settled by running ``hold_steps`` steps instead.
    """
    x0 = np.asarray(x0_int, dtype=np.int64)
    if x0.ndim != 2 or x0.shape[1] != N_AXES:
        raise FrontEndError(f"held samples must be (batch, 3), got shape {x0.shape}")
    shift = bank.B_wf + bank.B_af
    den = (np.int64(1) << (bank.B_af + bank.B_b)) + bank.a1 + bank.a2
    X = x0[:, bank.axis] << shift
    w = np.where(den > 0, X // np.where(den > 0, den, 1), 0)
    state = FilterState(w.copy(), w.copy())
    nxt = (-(bank.a1 + bank.a2) * w + X) >> (bank.B_af + bank.B_b)
    if hold_steps > 0 and not np.array_equal(nxt, w):
        held = np.broadcast_to(x0[:, None, :], (x0.shape[0], int(hold_steps), N_AXES))
        _, state = filter_bank(held, bank, state)
    return state


def filter_windows_int(
    acc_int: np.ndarray, bank: FilterBank, warmup: str = "hold", hold_steps: int = 400
) -> np.ndarray:
    """Windows without context (N, T, 3) int -> int32 (N, T, 15), each window on its own.

    warmup: "hold" - state of a device that rested at the window's first sample
    (`hold_state`; ``hold_steps`` only matters for filters without an exact fixed point), so
    no start-up transient carries gravity; "rest" - zero state (a gravity step at t=0:
    not what the chip sees); "mirror" - Rockpool ``FilterBank.evolve``'s convention: from
    rest over the time-reversed window followed by the window (``IMUIFSim`` agrees bit for bit).
    """
    acc = _check_acc_int(acc_int)
    N, T, _ = acc.shape
    if warmup not in WARMUPS:
        raise FrontEndError(f"warmup must be one of {WARMUPS}, got {warmup!r}")
    if N == 0 or T == 0:
        return np.zeros((N, T, N_CHANNELS), dtype=np.int32)
    if warmup == "rest":
        return filter_bank(acc, bank)[0]
    if warmup == "mirror":
        return filter_bank(np.concatenate([acc[:, ::-1], acc], axis=1), bank)[0][:, T:].copy()
    if int(hold_steps) < 0:
        raise FrontEndError(f"hold_steps must be >= 0, got {hold_steps}")
    return filter_bank(acc, bank, hold_state(acc[:, 0], bank, int(hold_steps)))[0]


def _as_windows(x: np.ndarray) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 3 or a.shape[2] != N_AXES:
        raise FrontEndError(f"windows must be (N, T, 3) acceleration in g at 200 Hz, got shape {a.shape}")
    return a


def filter_windows(
    x: np.ndarray, settings: FrontEndSettings, warmup: str = "hold", hold_s: float = 2.0
) -> np.ndarray:
    """Windows (N, T, 3) in g at 200 Hz -> filter outputs int32 (N, T, 15); see `filter_windows_int`."""
    _check_runnable(settings)
    acc = quantize_acc(_as_windows(x), settings.lsb_per_g)
    return filter_windows_int(acc, settings.bank(), warmup, int(round(float(hold_s) * FS_HZ)))


def run_windows(x: np.ndarray, settings: FrontEndSettings, warmup: str = "hold", hold_s: float = 2.0) -> np.ndarray:
    """Windows (N, T, 3) in g at 200 Hz -> event counts uint8 (N, T, 15), encoder from empty."""
    return encode(filter_windows(x, settings, warmup, hold_s), settings.encoder)[0]


# ---------------------------------------------------------------------------- encoder choice
DEFAULT_CANDIDATES: tuple[tuple[str, float], ...] = (
    ("iaf", 75.0), ("iaf", 90.0), ("iaf", 99.0),
    ("scale", 50.0), ("scale", 75.0), ("scale", 90.0), ("scale", 99.0),
)
_PERCENTILE_SAMPLES = 1 << 20  # values per channel used for percentiles (a strided subsample)


def abs_percentiles(filtered: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Per-channel percentiles of |filter output| -> float (len(percentiles), 15).

    Over at most ~1M values per channel (a deterministic strided subsample of the steps)."""
    y = _check_filtered(filtered).reshape(-1, N_CHANNELS)
    step = max(1, y.shape[0] // _PERCENTILE_SAMPLES)
    a = np.abs(y[::step].astype(np.int64))
    if a.shape[0] == 0:
        raise FrontEndError("no filter outputs to take percentiles of")
    return np.percentile(a, list(percentiles), axis=0)


def encoder_from_percentile(kind: str, level: np.ndarray) -> EncoderSettings:
    """Encoder registers from a per-channel |y| level P (e.g. a percentile).

    IAF: threshold = max(1, round(P)). Scale: the smallest shift with P >> shift <= 15, i.e.
    ``ceil(log2(P / 15))`` clipped to 0..31 (P maps to the top of the 0..15 range).
    """
    p = np.asarray(level, dtype=np.float64)
    if kind == "iaf":
        return EncoderSettings.iaf(np.clip(np.rint(p), IAF_THRESHOLD_MIN, IAF_THRESHOLD_MAX).astype(np.int64))
    if kind == "scale":
        s = np.ceil(np.log2(np.maximum(p, 1.0) / MAX_COUNT))
        return EncoderSettings.scale(np.clip(s, SCALE_SHIFT_MIN, SCALE_SHIFT_MAX).astype(np.int64))
    raise FrontEndError(f"encoder kind {kind!r} is not one of {ENCODER_KINDS}")


def _count_features(filtered: np.ndarray, encoders: Sequence[EncoderSettings]) -> np.ndarray:
    """Per window, mean and std over time of the counts of each channel, for each encoder:
    (len(encoders), N, 30), without materialising the count arrays (same counts as `encode`)."""
    y = _check_filtered(filtered)
    N, T, C = y.shape
    feats = np.empty((len(encoders), N, 2 * C))
    for b0, b1 in _batch_blocks(N, T):
        a = np.abs(y[b0:b1].astype(np.int32))  # |y| < 2**24
        cum = None
        for i, enc in enumerate(encoders):
            if enc.kind == "scale":
                c = np.minimum(a >> np.asarray(enc.values, dtype=np.int32), MAX_COUNT)
                m = c.sum(axis=1, dtype=np.int64) / T
                var = np.maximum(np.einsum("btc,btc->bc", c, c, dtype=np.int64) / T - m * m, 0.0)
            else:  # IAF counts are 0/1: an event where floor(cumsum / th) steps up
                if cum is None:
                    cum = np.cumsum(a, axis=1, dtype=np.int64)
                n = cum // np.asarray(enc.values, dtype=np.int64)
                m = ((n[:, 1:] != n[:, :-1]).sum(axis=1) + (n[:, 0] > 0)) / T
                var = m * (1.0 - m)
            feats[i, b0:b1, :C] = m
            feats[i, b0:b1, C:] = np.sqrt(var)
    return feats


def _holdout_split(y: np.ndarray, groups: np.ndarray | None, holdout: float) -> np.ndarray:
    """Boolean mask of held-out windows, deterministic.

    With ``groups`` (e.g. subjects): every k-th group in sorted order (k = round(1/holdout)).
    Without: per class, the last ``holdout`` fraction of its windows in their given order
    (contiguous, so overlapping neighbours of a held-out window are mostly held out too).
    """
    test = np.zeros(len(y), dtype=bool)
    if groups is not None:
        ug = np.unique(groups)
        k = max(2, int(round(1.0 / holdout)))
        held = ug[k - 1 :: k] if len(ug) >= k else ug[-1:]
        test = np.isin(groups, held)
        if test.all() or not test.any():
            raise FrontEndError(f"groups give no usable split ({len(ug)} groups); pass more groups or groups=None")
        return test
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        n_test = int(round(holdout * len(idx)))
        if n_test:
            test[idx[len(idx) - n_test :]] = True
    return test


def _ridge_score(
    f_train: np.ndarray, y_train: np.ndarray, f_test: np.ndarray, y_test: np.ndarray, lam: float = 1.0
) -> float:
    """Accuracy of a one-vs-rest ridge classifier on standardized features (the cheap proxy).

        z = (f - mean_train) / std_train;  W = argmin |[z 1] W - Y|^2 + lam |W|^2,  Y = +-1 one-hot;
        prediction = argmax_k [z 1] W[:, k]
    """
    mu, sd = f_train.mean(axis=0), f_train.std(axis=0)
    sd[sd == 0] = 1.0
    z_tr = np.hstack([(f_train - mu) / sd, np.ones((len(f_train), 1))])
    z_te = np.hstack([(f_test - mu) / sd, np.ones((len(f_test), 1))])
    classes = np.unique(y_train)
    Y = np.where(y_train[:, None] == classes[None, :], 1.0, -1.0)
    # einsum, not @: tiny products, and a BLAS on busy cores can take 100x longer for them
    gram = np.einsum("ni,nj->ij", z_tr, z_tr) + lam * np.eye(z_tr.shape[1])
    W = np.linalg.solve(gram, np.einsum("ni,nk->ik", z_tr, Y))
    pred = classes[np.argmax(np.einsum("ni,ik->nk", z_te, W), axis=1)]
    return float(np.mean(pred == y_test))


def choose_encoder(
    filtered_train: np.ndarray,
    y_train: np.ndarray,
    candidates: Sequence[tuple[str, float]] = DEFAULT_CANDIDATES,
    groups: np.ndarray | None = None,
    holdout: float = 0.25,
) -> tuple[EncoderSettings, dict[str, Any]]:
    """Pick the encoder kind and per-channel registers from training data.

    Each candidate (kind, percentile) sets its registers from that percentile of |filter
    output| per channel (`encoder_from_percentile`); it is scored by a ridge classifier
    (`_ridge_score`) on the per-window mean and std of the counts per channel (30 features),
    trained on part of the windows and scored on a deterministic held-out part
    (`_holdout_split`; pass ``groups`` = subjects to hold out whole subjects). Ties go to the
    earlier candidate. Returns the best encoder and a report: ``{"candidates": [{"name",
    "kind", "percentile", "values", "score", "events_per_step"}, ...], "best": name,
    "n_train", "n_test", "proxy"}`` (`format_encoder_report` prints it).
    """
    y_f = _check_filtered(filtered_train)
    labels = np.asarray(y_train)
    if labels.shape != (y_f.shape[0],):
        raise FrontEndError(f"y_train has shape {labels.shape}; it needs one label per window ({y_f.shape[0]})")
    if not 0.0 < holdout < 1.0:
        raise FrontEndError(f"holdout must be a fraction in (0, 1), got {holdout}")
    if not candidates:
        raise FrontEndError("no encoder candidates given")
    g = None if groups is None else np.asarray(groups)
    if g is not None and g.shape != labels.shape:
        raise FrontEndError(f"groups has shape {g.shape}; it needs one group per window ({labels.shape[0]})")
    test = _holdout_split(labels, g, holdout)
    if len(np.unique(labels[~test])) < 2:
        raise FrontEndError("the training part has fewer than 2 classes; give more windows per class")
    kinds, pcts = zip(*[(str(k), float(p)) for k, p in candidates])
    for p in pcts:
        if not 0.0 <= p <= 100.0:
            raise FrontEndError(f"candidate percentile {p} is outside 0..100")
    uniq = sorted(set(pcts))
    levels = abs_percentiles(y_f, uniq)  # amplitude statistics only: no label information
    encoders = [encoder_from_percentile(k, levels[uniq.index(p)]) for k, p in zip(kinds, pcts)]
    feats = _count_features(y_f, encoders)
    rows = []
    for k, p, enc, f in zip(kinds, pcts, encoders, feats):
        rows.append(
            {
                "name": f"{k} p{p:g}",
                "kind": k,
                "percentile": p,
                "values": list(enc.values),
                "score": _ridge_score(f[~test], labels[~test], f[test], labels[test]),
                "events_per_step": float(f[:, :N_CHANNELS].mean() * N_CHANNELS),
            }
        )
    best = max(range(len(rows)), key=lambda i: (rows[i]["score"], -i))
    report = {
        "candidates": rows,
        "best": rows[best]["name"],
        "n_train": int((~test).sum()),
        "n_test": int(test.sum()),
        "proxy": "ridge on per-window mean/std of counts per channel (30 features), held-out accuracy",
    }
    return encoders[best], report


def format_encoder_report(report: Mapping[str, Any]) -> str:
    """The chooser's table, one candidate per line, best marked."""
    lines = [f"encoder choice ({report['proxy']}; {report['n_train']} train / {report['n_test']} held-out windows)"]
    lines.append(f"  {'candidate':<12} {'score':>6} {'events/step':>12}")
    for r in report["candidates"]:
        mark = "  <- best" if r["name"] == report["best"] else ""
        lines.append(f"  {r['name']:<12} {r['score']:6.3f} {r['events_per_step']:12.2f}{mark}")
    return "\n".join(lines)
