"""Power model of the Xylo IMU: an *estimate* built from published figures, calibratable from measurements.

Chain (DESIGN.md, "Power figures (published)"):

    spikes actually produced --cycles model--> cycles per step c_t          (backends.cycles)
    max_t c_t * margin / dt  --lowest legal clock that keeps real time--> f (chip.CLOCKS_MHZ)
    busy-cycle rate  R = mean_t(c_t) * steps_per_s   (capped at f: the core cannot do more)
    P_core(f, R) = core_static_uw + core_uw_per_mhz * f + core_pj_per_cycle * R / 1e6
    P_io(f)      = io_static_uw   + io_uw_per_mhz   * f
    P_total      = P_core + P_io                                   (sensor not included)

(``pJ/cycle * cycles/s = 1e-12 W = 1e-6 uW``, hence ``R / 1e6``.) ``steps_per_s`` is ``1 / dt``
when the chip runs in real time; the HDK's accelerated-time mode runs faster and the device
reports its own rate.

Default constants and where each comes from (all **estimates**, to be replaced by
`aspen calibrate` with measurements):

* The only published Xylo IMU power figures (Rockpool's Xylo IMU tutorial): HDK at 6.25 MHz,
  a 15->4->2 network, dt = 10 ms: core rail (SNN core + IMU interface) 201.1 uW active,
  188.2 uW idle; IO rail ~333 uW. Rockpool states core power scales roughly in proportion
  to the clock.
* ``core_static_uw = 0`` and ``core_uw_per_mhz = 188.2 / 6.25``: "proportional to the clock"
  read literally, through the idle figure.
* ``core_pj_per_cycle``: the active-idle difference (12.9 uW) divided by the busy-cycle rate of
  the tutorial network at an *assumed* activity (not published): all 15 input channels and
  2 of the 4 hidden neurons active every step, dense 15x4 input and 4x2 readout weights, no
  recurrence: 377 cycles per step x 100 steps/s. Everything the tutorial's active state adds
  (IMU interface processing included) is booked to SNN cycles.
* ``io_static_uw = 333``, ``io_uw_per_mhz = 0``: one published point; no evidence how IO
  power moves with the clock.
* ``margin = 1.2``: Rockpool's ``est_clock_freq`` default 20 % margin over the cycles model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.cycles import (CycleShape, cycles_from_activity, fast_enough, min_clock_mhz,
                                          required_clock_mhz)
from aspen_deploy.io import atomic_write_json

FORMAT = "aspen-power-model/1"

# ---- the published figures the defaults are built from ---------------------------------------
PUBLISHED_SOURCE = ("Rockpool Xylo IMU tutorial: HDK at 6.25 MHz, 15->4->2 net, dt = 10 ms, core (SNN + IMUIF) "
                    "201.1 uW active / 188.2 uW idle, IO ~333 uW, sensor excluded (shared DESIGN.md, "
                    "'Power figures (published)')")
PUBLISHED_CLOCK_MHZ = 6.25
PUBLISHED_DT_S = 0.010
PUBLISHED_CORE_ACTIVE_UW = 201.1
PUBLISHED_CORE_IDLE_UW = 188.2
PUBLISHED_IO_UW = 333.0

# The tutorial network and the activity assumed for its "active" figure (not published).
REFERENCE_SHAPE = CycleShape(n_in=15, n_ien_used=4, n_hid=4, n_out=2, n_oen_used=4, fanout_avg=0.0, alias_rate=0.0)
REFERENCE_INPUT_ACTIVE = 15  # channels with >= 1 event per step (assumed)
REFERENCE_HIDDEN_ACTIVE = 2  # hidden neurons spiking per step (assumed)
REFERENCE_CYCLES_PER_STEP = float(cycles_from_activity(REFERENCE_SHAPE, REFERENCE_INPUT_ACTIVE, REFERENCE_HIDDEN_ACTIVE))

DEFAULT_MARGIN = 1.2  # Rockpool est_clock_freq(margin=0.2)

CONSTANTS = ("core_static_uw", "core_uw_per_mhz", "core_pj_per_cycle", "io_static_uw", "io_uw_per_mhz")
UNITS = {"core_static_uw": "uW", "core_uw_per_mhz": "uW/MHz", "core_pj_per_cycle": "pJ/cycle",
         "io_static_uw": "uW", "io_uw_per_mhz": "uW/MHz", "margin": "factor"}

DEFAULT_SOURCES: dict[str, str] = {
    "core_static_uw": "estimate: 0, Rockpool says core power scales roughly in proportion to the clock",
    "core_uw_per_mhz": f"estimate: idle core {PUBLISHED_CORE_IDLE_UW} uW / {PUBLISHED_CLOCK_MHZ} MHz; "
                       + PUBLISHED_SOURCE,
    "core_pj_per_cycle": (f"estimate: (active {PUBLISHED_CORE_ACTIVE_UW} - idle {PUBLISHED_CORE_IDLE_UW}) uW / "
                          f"({REFERENCE_CYCLES_PER_STEP:.0f} cycles/step x {1 / PUBLISHED_DT_S:.0f} steps/s); cycles "
                          f"of the 15->4->2 net at an ASSUMED activity ({REFERENCE_INPUT_ACTIVE} inputs, "
                          f"{REFERENCE_HIDDEN_ACTIVE} of 4 hidden active per step); " + PUBLISHED_SOURCE),
    "io_static_uw": f"estimate: IO rail {PUBLISHED_IO_UW} uW at {PUBLISHED_CLOCK_MHZ} MHz; " + PUBLISHED_SOURCE,
    "io_uw_per_mhz": "estimate: 0, one published IO figure gives no clock dependence",
    "margin": "Rockpool est_clock_freq: required clock = cycles x (1 + 0.2) / dt",
}


class PowerModelError(ValueError):
    """A power-model file or calibration input that cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class PowerEstimate:
    """Modelled power of one configuration at one clock (all power in uW)."""

    clock_mhz: float
    required_mhz: float  # max cycles per step x margin / dt
    realtime_ok: bool  # the clock keeps up with the busiest step (with the margin)
    cycles_per_step: float  # mean over steps
    cycles_per_s: float  # busy-cycle rate used for the power (capped at the clock)
    core_uw: float
    io_uw: float

    @property
    def total_uw(self) -> float:
        return self.core_uw + self.io_uw


@dataclass(frozen=True)
class PowerModel:
    """Core and IO rail power as a function of clock and busy-cycle rate (module docstring).

    Every constant has an entry in ``sources`` saying where it comes from; ``status`` is
    "estimate" for the published-figure defaults and "calibrated" after `fit_power_model`.
    """

    core_static_uw: float = 0.0
    core_uw_per_mhz: float = PUBLISHED_CORE_IDLE_UW / PUBLISHED_CLOCK_MHZ
    core_pj_per_cycle: float = ((PUBLISHED_CORE_ACTIVE_UW - PUBLISHED_CORE_IDLE_UW) * 1e6
                                / (REFERENCE_CYCLES_PER_STEP / PUBLISHED_DT_S))
    io_static_uw: float = PUBLISHED_IO_UW
    io_uw_per_mhz: float = 0.0
    margin: float = DEFAULT_MARGIN
    status: str = "estimate"
    sources: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SOURCES))
    calibration: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in CONSTANTS:
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise PowerModelError(f"power-model constant {name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.margin, (int, float)) and self.margin >= 1.0):
            raise PowerModelError(f"power-model margin must be a factor >= 1 (Rockpool uses 1.2), got {self.margin!r}")

    # ---- the equations --------------------------------------------------------------------
    def core_uw(self, clock_mhz: Any, cycles_per_s: Any = 0.0) -> np.ndarray | float:
        """``P_core = core_static_uw + core_uw_per_mhz * f + core_pj_per_cycle * R / 1e6`` (f MHz, R cycles/s)."""
        f = np.asarray(clock_mhz, dtype=np.float64)
        r = np.asarray(cycles_per_s, dtype=np.float64)
        out = self.core_static_uw + self.core_uw_per_mhz * f + self.core_pj_per_cycle * r / 1e6
        return float(out) if out.ndim == 0 else out

    def io_uw(self, clock_mhz: Any) -> np.ndarray | float:
        """``P_io = io_static_uw + io_uw_per_mhz * f``."""
        out = self.io_static_uw + self.io_uw_per_mhz * np.asarray(clock_mhz, dtype=np.float64)
        return float(out) if out.ndim == 0 else out

    def idle_core_uw(self, clock_mhz: float) -> float:
        """Core power with the clock running and no SNN processing."""
        return float(self.core_uw(clock_mhz, 0.0))

    def choose_clock(self, cycles_per_step: np.ndarray, dt: float = chip.DT_S) -> tuple[float, float, bool]:
        """(clock, required MHz, real time kept): the lowest of `chip.CLOCKS_MHZ` at or above
        ``max(cycles) * margin / dt``; the top clock (and False) when none is fast enough."""
        choice = min_clock_mhz(cycles_per_step, dt=dt, margin=self.margin)
        if choice.clock_mhz is None:
            return max(chip.CLOCKS_MHZ), choice.required_mhz, False
        return float(choice.clock_mhz), choice.required_mhz, True

    def clock_for(self, cycles_per_step: np.ndarray, clock: float | str = "auto",
                  dt: float = chip.DT_S) -> tuple[float, float, bool]:
        """(clock, required MHz, real time kept) for ``clock`` "auto" (`choose_clock`) or a given MHz."""
        if isinstance(clock, str):
            if clock != "auto":
                raise ValueError(f"clock must be 'auto' or a frequency in MHz, got {clock!r}")
            return self.choose_clock(cycles_per_step, dt)
        f = float(clock)
        required = required_clock_mhz(cycles_per_step, dt, self.margin)
        return f, required, fast_enough(f, required)

    def estimate(self, cycles_per_step: np.ndarray, dt: float = chip.DT_S, clock: float | str = "auto",
                 steps_per_s: float | None = None) -> PowerEstimate:
        """Power for the given per-step cycles (any shape) at ``clock`` ("auto": `choose_clock`).

        ``steps_per_s`` defaults to ``1 / dt`` (real time). The busy-cycle rate is capped at the
        clock rate, since the core cannot run more cycles than it is clocked for.
        """
        c = np.asarray(cycles_per_step, dtype=np.float64)
        if c.size == 0:
            raise ValueError("no cycle counts given")
        f, required, ok = self.clock_for(c, clock, dt)
        rate = (1.0 / dt) if steps_per_s is None else float(steps_per_s)
        busy = min(float(c.mean()) * rate, f * 1e6)
        return PowerEstimate(clock_mhz=f, required_mhz=required, realtime_ok=bool(ok), cycles_per_step=float(c.mean()),
                             cycles_per_s=busy, core_uw=float(self.core_uw(f, busy)), io_uw=float(self.io_uw(f)))

    @property
    def label(self) -> str:
        """"estimate" for the published-figure defaults, else status plus a fingerprint of the constants."""
        if self == PowerModel():
            return "estimate"
        import hashlib

        blob = json.dumps([round(float(getattr(self, k)), 9) for k in (*CONSTANTS, "margin")])
        return f"{self.status}:{hashlib.sha1(blob.encode()).hexdigest()[:8]}"

    # ---- file I/O -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": FORMAT,
            "status": self.status,
            "note": "Xylo IMU power model; every number is an estimate unless 'status' is 'calibrated', "
                    "and then only as good as the measurements it was fitted to",
            "equations": {"core_uw": "core_static_uw + core_uw_per_mhz * clock_mhz + core_pj_per_cycle * "
                                     "cycles_per_s / 1e6",
                          "io_uw": "io_static_uw + io_uw_per_mhz * clock_mhz",
                          "clock": "lowest chip clock >= max cycles_per_step * margin / dt"},
            "constants": {k: {"value": float(getattr(self, k)), "unit": UNITS[k], "source": self.sources.get(k, "")}
                          for k in (*CONSTANTS, "margin")},
        }
        if self.calibration is not None:
            d["calibration"] = dict(self.calibration)
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "power model") -> "PowerModel":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise PowerModelError(f"{where} is not an {FORMAT} document (write one with 'aspen calibrate')")
        consts = d.get("constants")
        if not isinstance(consts, dict):
            raise PowerModelError(f"{where} lacks its 'constants' object")
        values: dict[str, float] = {}
        sources: dict[str, str] = {}
        for k in (*CONSTANTS, "margin"):
            entry = consts.get(k)
            if not isinstance(entry, dict) or isinstance(entry.get("value"), bool) \
                    or not isinstance(entry.get("value"), (int, float)):
                raise PowerModelError(f"{where}: constants.{k} must be an object with a numeric 'value'")
            values[k] = float(entry["value"])
            sources[k] = str(entry.get("source", ""))
        return cls(**values, status=str(d.get("status", "estimate")), sources=sources,
                   calibration=d.get("calibration"))

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "PowerModel":
        p = Path(path)
        if not p.is_file():
            raise PowerModelError(f"power-model file not found: {p} (write one with 'aspen calibrate MEASURED.csv "
                                  "--out MODEL.json')")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise PowerModelError(f"{p} is not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(d, where=str(p))


# ---- calibration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class FitReport:
    """What `fit_power_model` did: which constants it fitted, which it kept, and how well it fits."""

    n_rows: int
    fitted: tuple[str, ...]
    kept: tuple[str, ...]
    core_rms_uw: float
    io_rms_uw: float
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "fitted": list(self.fitted), "kept_from_prior": list(self.kept),
                "core_rms_residual_uw": self.core_rms_uw, "io_rms_residual_uw": self.io_rms_uw,
                "notes": list(self.notes)}


def _separable(columns: Mapping[str, np.ndarray], order_to_drop: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split the columns into those the data can separate (full-rank design) and those dropped,
    dropping in ``order_to_drop`` order until the rest has full column rank."""
    names = list(columns)
    dropped: list[str] = []
    while names:
        a = np.column_stack([columns[k] for k in names])
        scale = np.linalg.norm(a, axis=0)
        scale[scale == 0] = 1.0
        if np.linalg.matrix_rank(a / scale, tol=1e-6) == len(names):
            break
        drop = next(k for k in order_to_drop if k in names)
        names.remove(drop)
        dropped.append(drop)
    return names, dropped


def _nonneg_lsq(columns: Mapping[str, np.ndarray], names: Sequence[str], target: np.ndarray) -> dict[str, float]:
    """``argmin_x |A x - target|^2`` subject to ``x >= 0`` (scipy ``lsq_linear``), columns scaled to unit norm."""
    from scipy.optimize import lsq_linear

    if not names:
        return {}
    a = np.column_stack([columns[k] for k in names])
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    res = lsq_linear(a / scale, target, bounds=(0.0, np.inf))
    return {k: float(v / s) for k, v, s in zip(names, res.x, scale)}


def _fit_rail(rail: str, columns: Mapping[str, np.ndarray], target: np.ndarray, order_to_drop: Sequence[str],
              prior: "PowerModel", notes: list[str]) -> dict[str, float]:
    """Fit one rail; constants the data cannot separate keep the prior value and are subtracted first."""
    names, dropped = _separable(columns, order_to_drop)
    for k in dropped:
        notes.append(f"{rail}: the data do not separate {k} from the other terms; kept its prior value")
    rest = target - sum((getattr(prior, k) * columns[k] for k in dropped), np.zeros_like(target))
    return _nonneg_lsq(columns, names, rest)


def fit_power_model(rows: Iterable[Mapping[str, Any]], prior: PowerModel | None = None,
                    source: str = "measured sweep") -> tuple[PowerModel, FitReport]:
    """Fit the five constants to measured rows by (non-negative) linear least squares.

    Each row needs ``clock_mhz``, ``cycles_per_step``, ``core_uw`` and ``io_uw``;
    ``steps_per_s`` (busy steps per second during the measurement) defaults to ``1 / chip.DT_S``.
    Core: ``core_uw ~ s + k f + e R / 1e6`` with ``R = min(cycles_per_step * steps_per_s, f 1e6)``;
    IO: ``io_uw ~ s_io + k_io f``. With a single clock the static terms cannot be told apart from
    the per-MHz terms: they keep the prior's values (and so on; see `FitReport.notes`).
    """
    prior = prior or PowerModel()
    rs = list(rows)
    need = ("clock_mhz", "cycles_per_step", "core_uw", "io_uw")
    clean = []
    for i, r in enumerate(rs):
        try:
            vals = {k: float(r[k]) for k in need}
        except (KeyError, TypeError, ValueError):
            raise PowerModelError(f"row {i + 1} lacks a number in one of {list(need)}; is this a power_sweep.csv?") \
                from None
        sps = r.get("steps_per_s")
        vals["steps_per_s"] = float(sps) if sps not in (None, "") else 1.0 / chip.DT_S
        if all(math.isfinite(v) for v in vals.values()):
            clean.append(vals)
    if len(clean) < 2:
        raise PowerModelError(f"need at least 2 rows with finite clock, cycles and power to calibrate, got {len(clean)}")
    f = np.array([r["clock_mhz"] for r in clean])
    rate = np.minimum(np.array([r["cycles_per_step"] * r["steps_per_s"] for r in clean]), f * 1e6) / 1e6
    core = np.array([r["core_uw"] for r in clean])
    io = np.array([r["io_uw"] for r in clean])
    notes: list[str] = []
    if len(np.unique(np.round(f, 6))) < 2:
        notes.append("all rows share one clock: sweep at several clocks (--clock MHZ) to fit the static terms")

    core_cols = {"core_static_uw": np.ones_like(f), "core_uw_per_mhz": f, "core_pj_per_cycle": rate}
    core_fit = _fit_rail("core", core_cols, core, ("core_static_uw", "core_pj_per_cycle", "core_uw_per_mhz"),
                         prior, notes)
    io_cols = {"io_static_uw": np.ones_like(f), "io_uw_per_mhz": f}
    io_fit = _fit_rail("io", io_cols, io, ("io_uw_per_mhz", "io_static_uw"), prior, notes)

    fitted = {**core_fit, **io_fit}
    sources = dict(prior.sources)
    for k in fitted:
        sources[k] = f"calibrated: least-squares fit to {len(clean)} rows of {source}"
    model = replace(prior, **fitted, status="calibrated", sources=sources)
    core_rms = float(np.sqrt(np.mean((model.core_uw(f, rate * 1e6) - core) ** 2)))
    io_rms = float(np.sqrt(np.mean((model.io_uw(f) - io) ** 2)))
    kept = tuple(k for k in CONSTANTS if k not in fitted)
    report = FitReport(len(clean), tuple(k for k in CONSTANTS if k in fitted), kept, core_rms, io_rms, tuple(notes))
    return replace(model, calibration={"source": source, **report.to_dict()}), report

