"""`aspen control`: the controller, the fixed nominal threshold and the best static threshold in
hindsight, on one continuous IMU stream against one power budget.

For every control period ``p`` (``P`` steps, default 200 = 1 s; `aspen_deploy.control.stream`):

* controller: ``decision = step(state, measurement of period p - 1, budget(p))``; a write is
  range-checked (`RegisterLimits.check`) and then applied (``set_threshold_scale``, ``set_clock``);
  the device runs the period (`period_inputs`: warm-up + period, from reset) and its power
  samples after the warm-up give the period's power ``m_p`` (the mean of the samples whose
  step ``t_s x steps_per_s`` lies past the warm-up);
* ``fixed``: threshold scale 1.0 at the clock the power sweep chose for it, all periods;
* ``best_static``: every prior point is run as a static setting on the same periods; the one
  chosen in hindsight is the most accurate whose settled time over budget (below) is at most
  ``over_budget_target`` (default 5 %); if none is, the one with the least.

Budget ``B(p)`` is the trace's value at the start of the period (a row holds until the next).
Metrics per policy, over periods ``p`` with power ``m_p`` and duration ``T = P dt``:

    time_over_budget_fraction          = mean_p [m_p > B(p)]
    time_over_budget_fraction_settled  = the same over periods that are feasible (some prior point,
                                         run statically, drew at most B(p) in that period) and not
                                         among the first ``settle_periods`` after a budget change
    accuracy    = mean over scored windows (truth >= 0) of [prediction == truth]
    energy_uj   = sum_p m_p T            mean_power_uw = energy_uj / (n T)

Power is what the device reports: measured on the HDK, modelled on the virtual device. On the
HDK the device runs in accelerated time, so one period (1.4 s of steps) may finish before the
5 Hz monitor reports; a period without samples is a missing measurement, and the controller
then falls back to the lowest-power setting (the safe reading of "no data"). Per-period power on
the HDK needs the board to process each period in real time.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.cycles import CycleShape, cycles_from_activity, lowest_clock, required_clock_mhz
from aspen_deploy.config import XyloConfig
from aspen_deploy.control.controller import (ControlError, Controller, ControllerSettings, Decision, Measurement,
                                             OperatingPoint, RegisterLimits, make_context,
                                             points_from_rows)
from aspen_deploy.control.stream import (PERIOD_STEPS, WARMUP_STEPS, ImuStream, n_periods, period_inputs,
                                         stream_events, stream_for_data, window_predictions, window_truth)
from aspen_deploy.io import atomic_savefig, atomic_write_json, atomic_write_text
from aspen_deploy.power.model import PowerModel

TIMELINE_CSV = "control_timeline.csv"
SUMMARY_JSON = "control_summary.json"
PLOT_PNG = "control.png"
NOMINAL_SCALE = 1.0
POLICIES = ("controller", "fixed", "best_static")
FRONTEND_CHUNK_STEPS = 2000  # the front end runs ahead of the control loop in 10 s chunks (same counts)
STATIC_BATCH = 256  # periods per device call for the static policies


class BudgetTraceError(ValueError):
    """A budget trace that cannot be used; one line saying where and what to fix."""


# ---- budget ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BudgetTrace:
    """Budget ``budgets_uw[i]`` from ``times_s[i]`` until ``times_s[i + 1]`` (the last holds forever)."""

    times_s: tuple[float, ...]
    budgets_uw: tuple[float, ...]

    @classmethod
    def constant(cls, budget_uw: float) -> "BudgetTrace":
        if not isinstance(budget_uw, (int, float)) or not math.isfinite(budget_uw) or budget_uw <= 0:
            raise BudgetTraceError(f"--budget-uw must be a positive number of microwatts, got {budget_uw!r}")
        return cls((0.0,), (float(budget_uw),))

    def at(self, t_s: np.ndarray | float) -> np.ndarray:
        """Budget in force at time(s) ``t_s``."""
        i = np.searchsorted(np.asarray(self.times_s), np.asarray(t_s, dtype=np.float64), side="right") - 1
        return np.asarray(self.budgets_uw)[np.clip(i, 0, None)]


def parse_budget_trace(lines: Iterable[str], where: str = "budget trace") -> BudgetTrace:
    """CSV text with a header holding ``time_s`` and ``budget_uw`` -> `BudgetTrace` (validated)."""
    reader = csv.reader(lines, skipinitialspace=True)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise BudgetTraceError(f"{where} is empty: write a header 'time_s,budget_uw' and one row per budget step") \
            from None
    missing = [c for c in ("time_s", "budget_uw") if c not in header]
    if missing:
        raise BudgetTraceError(f"{where} has no column {' or '.join(missing)} (header {header}); the header must be "
                               "'time_s,budget_uw'")
    it, ib = header.index("time_s"), header.index("budget_uw")
    times: list[float] = []
    budgets: list[float] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        vals = []
        for name, i in (("time_s", it), ("budget_uw", ib)):
            cell = row[i].strip() if i < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise BudgetTraceError(f"{where} line {line_no}: {name} {cell!r} is not a number") from None
            if not math.isfinite(v):
                raise BudgetTraceError(f"{where} line {line_no}: {name} {cell!r} is not a finite number")
            vals.append(v)
        t, b = vals
        if b < 0:
            raise BudgetTraceError(f"{where} line {line_no}: budget_uw {b:g} is negative; budgets are microwatts > 0")
        if b == 0:
            raise BudgetTraceError(f"{where} line {line_no}: budget_uw 0 cannot be met; give a positive budget")
        if times and t <= times[-1]:
            raise BudgetTraceError(f"{where} line {line_no}: time_s {t:g} does not increase (previous row "
                                   f"{times[-1]:g}); sort the rows by time")
        if not times and t != 0:
            raise BudgetTraceError(f"{where} line {line_no}: the first row must be at time_s 0 (got {t:g}), so "
                                   "the budget is known from the start")
        times.append(t)
        budgets.append(b)
    if not times:
        raise BudgetTraceError(f"{where} has a header but no rows; add at least '0,BUDGET_UW'")
    return BudgetTrace(tuple(times), tuple(budgets))


def read_budget_trace(path: str | Path) -> BudgetTrace:
    """Read and validate a budget-trace CSV (columns ``time_s, budget_uw``)."""
    p = Path(path)
    if not p.is_file():
        raise BudgetTraceError(f"budget trace not found: {p}")
    with open(p, newline="") as f:
        return parse_budget_trace(f, where=str(p))


def write_budget_trace(path: str | Path, trace: BudgetTrace) -> Path:
    rows = ["time_s,budget_uw"] + [f"{t:g},{b:.1f}" for t, b in zip(trace.times_s, trace.budgets_uw)]
    return atomic_write_text(path, "\n".join(rows) + "\n")


# ---- prior -------------------------------------------------------------------------------------
def static_power_uw(cfg: XyloConfig, model: PowerModel, clock_mhz: float) -> float:
    """Power that no threshold changes: idle core at the clock, the cycles every step costs with no
    input or hidden activity, and the IO rail (the part the feedback gain does not scale)."""
    c0 = cycles_from_activity(CycleShape.of(cfg), 0, 0)
    return model.estimate(c0, cfg.dt, clock=clock_mhz).total_uw


def prior_points(rows: Sequence[dict[str, Any]], cfg: XyloConfig, model: PowerModel) -> list[OperatingPoint]:
    """Operating points from power-sweep rows, with the static part from the power model."""
    pts = points_from_rows(rows)
    out = []
    for p in pts:
        s = min(static_power_uw(cfg, model, p.clock_mhz), 0.9 * p.power_uw)  # a calibrated model may disagree
        out.append(OperatingPoint(p.scale, p.clock_mhz, p.power_uw, p.accuracy, p.required_mhz, s))
    return out


def select_prior_rows(rows: Sequence[dict[str, Any]], model_name: str, device_name: str,
                      model_label: str | None) -> list[dict[str, Any]]:
    """This run's auto-clock rows from this device (modelled rows: made by this power model)."""
    out = []
    for r in rows:
        if r.get("model") != model_name or str(r.get("clock_setting", "auto")) != "auto":
            continue
        if r.get("device", device_name) != device_name:
            continue
        if r.get("power_source") == "modelled" and model_label is not None and r.get("power_model", model_label) \
                != model_label:
            continue
        out.append(r)
    return out


# ---- running periods on a device ---------------------------------------------------------------
@dataclass
class PolicyRun:
    """Per period: power (uW), scale, clock, needed clock, whether a step fell behind; stitched readout."""

    power_uw: np.ndarray
    scale: np.ndarray
    clock_mhz: np.ndarray
    required_mhz: np.ndarray
    behind: np.ndarray
    vmem: np.ndarray  # (n P, Nout)


def _period_power(t_s: np.ndarray, total_uw: np.ndarray, steps_per_s: float, n_win: int, win: int,
                  warmup: int) -> np.ndarray:
    """Mean power per window of ``n_win`` back-to-back windows of ``win`` steps, from the samples whose
    period ends past the warm-up: sample at ``t`` ends at step ``t sps``; window ``floor((step - 1) / win)``."""
    out = np.full(n_win, np.nan)
    if len(t_s) == 0:
        return out
    step = np.round(np.asarray(t_s) * steps_per_s).astype(np.int64)
    w = (step - 1) // win
    off = step - w * win
    keep = (w >= 0) & (w < n_win) & (off > warmup)
    if not keep.any():  # too few samples to place (e.g. a short accelerated run): all of them count
        return np.full(n_win, float(np.mean(total_uw)))
    s = np.bincount(w[keep], weights=total_uw[keep], minlength=n_win)
    c = np.bincount(w[keep], minlength=n_win)
    out[c > 0] = s[c > 0] / c[c > 0]
    return out


def _periods_result(device: Any, r: Any, n_win: int, period: int, warmup: int, clock_mhz: float, margin: float,
                    dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What a device call on ``n_win`` periods (each warm-up + period) gave, past the warm-ups:
    (power per period, needed clock per period, fell behind per period, readout vmem (n_win P, Nout))."""
    ps = device.power_samples()
    power = _period_power(ps.t_s, ps.core_uw + ps.io_uw, device.steps_per_s, n_win, warmup + period, warmup)
    cyc = np.asarray(r.cycles_per_step)[:, warmup:]
    vm = np.asarray(r.readout_vmem)[:, warmup:]
    return power, required_clock_mhz(cyc, dt, margin, axis=1), cyc.max(axis=1) > clock_mhz * 1e6 * dt, vm.reshape(-1, vm.shape[-1])


def run_static(device: Any, events: np.ndarray, n: int, scale: float, clock_mhz: float, limits: RegisterLimits,
               period: int = PERIOD_STEPS, warmup: int = WARMUP_STEPS, margin: float = 1.2, dt: float = chip.DT_S,
               batch: int = STATIC_BATCH) -> PolicyRun:
    """One setting for every period, run in batches of periods (each warm-up + period, from reset)."""
    limits.check(scale, clock_mhz)
    device.set_threshold_scale(scale)
    device.set_clock(clock_mhz)
    parts = []
    for a in range(0, n, batch):
        idx = np.arange(a, min(n, a + batch))
        r = device.run(period_inputs(events, idx, period, warmup))
        parts.append(_periods_result(device, r, len(idx), period, warmup, clock_mhz, margin, dt))
    power, req, behind, vm = (np.concatenate(c) for c in zip(*parts))
    return PolicyRun(power, np.full(n, scale), np.full(n, clock_mhz), req, behind, vm)


class GuardedWriter:
    """Applies controller decisions to a device, range-checking every value first; keeps a write log."""

    def __init__(self, device: Any, limits: RegisterLimits) -> None:
        self.device = device
        self.limits = limits
        self.writes: list[tuple[int, float, float]] = []  # (period, scale, clock)
        self._scale: float | None = None
        self._clock: float | None = None

    def apply(self, period: int, scale: float, clock_mhz: float) -> None:
        self.limits.check(scale, clock_mhz)  # raises before anything reaches the device
        if self._scale is None or abs(scale - self._scale) > 1e-12:
            self.device.set_threshold_scale(scale)
            self._scale = scale
        if self._clock is None or abs(clock_mhz - self._clock) > 1e-9:
            self._clock = self.device.set_clock(clock_mhz)
        self.writes.append((period, scale, clock_mhz))


MeasurementFault = Callable[[int, "float | None"], "float | None"]


def run_closed_loop(device: Any, events: np.ndarray, n: int, budgets: np.ndarray, controller: Controller,
                    limits: RegisterLimits, period: int = PERIOD_STEPS, warmup: int = WARMUP_STEPS,
                    margin: float = 1.2, dt: float = chip.DT_S, fault: MeasurementFault | None = None,
                    progress: Callable[..., Any] | None = None) -> tuple[PolicyRun, list[Decision], GuardedWriter]:
    """The controller in the loop, one device call per period. ``fault(p, power)`` may replace what the
    controller is told about period ``p`` (tests: dropped or corrupted measurements); the timeline keeps
    what the device reported."""
    writer = GuardedWriter(device, limits)
    power = np.full(n, np.nan)
    scale = np.zeros(n)
    clock = np.zeros(n)
    req = np.zeros(n)
    behind = np.zeros(n, bool)
    vm: list[np.ndarray] = []
    decisions: list[Decision] = []
    meas: Measurement | None = None
    bar = progress(total=n, desc="controller") if progress else None
    for p in range(n):
        d = controller.step(meas, float(budgets[p]))
        decisions.append(d)
        if d.write:
            writer.apply(p, d.scale, d.clock_mhz)
        r = list(device.stream([period_inputs(events, p, period, warmup)]))[0]
        pw, rq, bh, v = _periods_result(device, r, 1, period, warmup, d.clock_mhz, margin, dt)
        m = pw[0]
        power[p], scale[p], clock[p] = m, d.scale, d.clock_mhz
        req[p], behind[p] = float(rq[0]), bool(bh[0])
        vm.append(v)
        seen = None if not math.isfinite(m) else float(m)
        if fault is not None:
            seen = fault(p, seen)
        meas = Measurement(seen, req[p] if math.isfinite(req[p]) else None)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    return PolicyRun(power, scale, clock, req, behind, np.concatenate(vm)), decisions, writer


# ---- metrics -----------------------------------------------------------------------------------
def settled_mask(budgets: np.ndarray, settle_periods: int) -> np.ndarray:
    """False for the first ``settle_periods`` periods of the run and after every budget change."""
    n = len(budgets)
    m = np.ones(n, bool)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(budgets) != 0) + 1])
    for s in starts:
        m[s:s + settle_periods] = False
    return m


def policy_metrics(run: PolicyRun, budgets: np.ndarray, pred: np.ndarray, truth: np.ndarray, judged: np.ndarray,
                   period_s: float) -> dict[str, Any]:
    """The summary numbers of one policy (module docstring)."""
    p = run.power_uw
    valid = np.isfinite(p)
    over = valid & (p > budgets)
    scored = truth >= 0
    energy = float(np.nansum(p) * period_s)
    jv = judged & valid
    return {
        "time_over_budget_fraction": float(over[valid].mean()) if valid.any() else float("nan"),
        "time_over_budget_fraction_settled": float(over[jv].mean()) if jv.any() else float("nan"),
        "accuracy": float(np.mean(pred[scored] == truth[scored])) if scored.any() else float("nan"),
        "energy_uj": energy,
        "mean_power_uw": float(np.nanmean(p)) if valid.any() else float("nan"),
        "max_power_uw": float(np.nanmax(p)) if valid.any() else float("nan"),
        "periods_behind_real_time": int(np.sum(run.behind)),
        "scored_windows": int(scored.sum()),
    }


def choose_best_static(metrics: dict[float, dict[str, Any]], target: float) -> tuple[float, str]:
    """Most accurate scale with settled time over budget <= target (ties: less energy); else the least over."""
    ok = [s for s, m in metrics.items() if m["time_over_budget_fraction_settled"] <= target + 1e-12]
    if ok:
        s = max(ok, key=lambda k: (round(metrics[k]["accuracy"], 12), -metrics[k]["energy_uj"]))
        return s, f"most accurate static scale with settled time over budget <= {target:.0%}"
    s = min(metrics, key=lambda k: (metrics[k]["time_over_budget_fraction_settled"], -metrics[k]["accuracy"]))
    return s, f"no static scale keeps settled time over budget <= {target:.0%}: the one over least often"


# ---- the command -------------------------------------------------------------------------------
def _load_power_model(pm: PowerModel | str | Path | None) -> PowerModel:
    if pm is None:
        return PowerModel()
    if isinstance(pm, PowerModel):
        return pm
    return PowerModel.load(pm)


def _frontend_settings(run_dir: Path, cfg: XyloConfig) -> Any:
    from data_prep.frontend import FrontEndSettings

    if cfg.imu_if:
        return FrontEndSettings.from_dict(cfg.imu_if)
    settings = json.loads((run_dir / "settings.json").read_text())
    if not settings.get("frontend"):
        raise ControlError(f"{run_dir}: neither xylo_config.json (imu_if) nor settings.json holds front-end "
                           "settings; export the run again with 'aspen export'")
    return FrontEndSettings.from_dict(settings["frontend"])


def run_control(run_dir: str | Path, device: Any = "virtual", budget_uw: float | None = None,
                budget_trace: BudgetTrace | str | Path | None = None, duration_s: float | None = None,
                out_dir: str | Path | None = None, *, board: str | None = None,
                power_model: PowerModel | str | Path | None = None, noise_uw: float = 0.0,
                settings: ControllerSettings | None = None, stream: ImuStream | None = None,
                period_steps: int = PERIOD_STEPS, warmup_steps: int = WARMUP_STEPS, settle_periods: int = 3,
                over_budget_target: float = 0.05, fault: MeasurementFault | None = None, plot: bool = True,
                log: Callable[[str], Any] | None = None, progress: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Run the three policies (module docstring) on the run's test stream; write the timeline CSV,
    the summary JSON and the plot into ``out_dir`` (default ``RUN_DIR/control``); return the summary.

    ``device``: "virtual", "hdk" or an open `Device`. Exactly one of ``budget_uw`` and ``budget_trace``
    (a `BudgetTrace` or a CSV path). ``stream`` replaces the run's test stream (tests).
    The prior is the run's ``power_sweep.csv`` (rows of this device); it is measured first when absent.
    """
    from aspen_deploy.devices import open_device
    from aspen_deploy.power_sweep import read_power_rows, run_power_sweep

    log = log or (lambda s: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ControlError(f"run directory not found: {run_dir}")
    if (budget_uw is None) == (budget_trace is None):
        raise BudgetTraceError("give exactly one of --budget-uw and --budget-trace")
    if budget_uw is not None:
        trace = BudgetTrace.constant(budget_uw)
    else:
        assert budget_trace is not None
        trace = budget_trace if isinstance(budget_trace, BudgetTrace) else read_budget_trace(budget_trace)
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ControlError(f"--duration must be a positive number of seconds, got {duration_s}")
    if period_steps < 1 or warmup_steps < 0:
        raise ControlError(f"period_steps must be >= 1 and warmup_steps >= 0, got {period_steps}, {warmup_steps}")
    out = Path(out_dir) if out_dir is not None else run_dir / "control"
    model = _load_power_model(power_model)

    cfg_path = run_dir / "xylo_config.json"
    if not cfg_path.exists():
        from aspen_deploy.export import export_run

        log(f"{run_dir.name}: no xylo_config.json yet, exporting")
        export_run(run_dir, log=log)
    cfg = XyloConfig.load(cfg_path)
    limits = RegisterLimits.from_config(cfg)
    dt = cfg.dt
    period_s = period_steps * dt

    if stream is None:
        spec = json.loads((run_dir / "settings.json").read_text()).get("data", {})
        stream = stream_for_data(spec)
    stream = stream.head(duration_s)
    n = n_periods(len(stream), period_steps)
    if n < 1:
        raise ControlError(f"the stream has {len(stream)} steps, less than one control period ({period_steps})")

    own = isinstance(device, str)
    dev = open_device(device, board, power_model=model, noise_uw=noise_uw) if own else device
    try:
        # prior
        rows = select_prior_rows(read_power_rows(run_dir / "power_sweep.csv"), run_dir.name, dev.name,
                                 model.label if dev.power_source == "modelled" else None)
        if not rows:
            log(f"{run_dir.name}: no power sweep on {dev.name} yet: measuring the prior")
            run_power_sweep(run_dir, dev, power_model=model, log=log, progress=progress)
            rows = select_prior_rows(read_power_rows(run_dir / "power_sweep.csv"), run_dir.name, dev.name,
                                     model.label if dev.power_source == "modelled" else None)
        points = prior_points(rows, cfg, model)
        s = settings or ControllerSettings()
        s = ControllerSettings(**{**asdict(s), "period_s": period_s,
                                  "uw_per_mhz": model.core_uw_per_mhz + model.io_uw_per_mhz})
        ctx = make_context(points, limits, s)
        for why in ctx.dropped:
            log(f"prior: dropped {why}")
        nominal = [p for p in ctx.points if abs(p.scale - NOMINAL_SCALE) < 1e-9]
        if not nominal:
            raise ControlError(f"the power sweep of {run_dir.name} has no usable row at threshold scale "
                               f"{NOMINAL_SCALE:g} (the fixed policy); run 'aspen power-sweep' with it in --scales")

        # stream
        fe = _frontend_settings(run_dir, cfg)
        log(f"stream: {stream.source}, {stream.duration_s / 60:.1f} min at {stream.fs:g} Hz, {n} control periods "
            f"of {period_s:g} s; front end in {FRONTEND_CHUNK_STEPS}-step chunks")
        events = stream_events(stream, fe, FRONTEND_CHUNK_STEPS)
        truth = window_truth(stream.labels, n, period_steps)
        t_start = np.arange(n) * period_s
        budgets = trace.at(t_start).astype(np.float64)
        dev.load(cfg)

        # static policies: every prior point (fixed = the nominal one)
        static: dict[float, PolicyRun] = {}
        for p in ctx.points:
            f = lowest_clock(p.required_mhz, limits.clocks)
            log(f"static scale {p.scale:g} at {f:.4g} MHz")
            static[p.scale] = run_static(dev, events, n, p.scale, f, limits, period_steps, warmup_steps,
                                         model.margin, dt)
        # closed loop
        log("controller in the loop")
        ctl = Controller(ctx)
        ctl_run, decisions, writer = run_closed_loop(dev, events, n, budgets, ctl, limits, period_steps,
                                                     warmup_steps, model.margin, dt, fault, progress)
    finally:
        if own:
            dev.close()

    # hindsight and metrics
    floor = np.nanmin(np.stack([r.power_uw for r in static.values()]), axis=0)
    feasible = floor <= budgets
    judged = settled_mask(budgets, settle_periods) & feasible
    preds = {s_: window_predictions(r.vmem, n, period_steps) for s_, r in static.items()}
    static_metrics = {s_: policy_metrics(r, budgets, preds[s_], truth, judged, period_s) for s_, r in static.items()}
    best, why_best = choose_best_static(static_metrics, over_budget_target)
    ctl_pred = window_predictions(ctl_run.vmem, n, period_steps)
    runs = {"controller": (ctl_run, ctl_pred), "fixed": (static[NOMINAL_SCALE], preds[NOMINAL_SCALE]),
            "best_static": (static[best], preds[best])}
    per_policy = {k: policy_metrics(r, budgets, pr, truth, judged, period_s) for k, (r, pr) in runs.items()}
    per_policy["controller"]["writes"] = len(writer.writes)
    per_policy["fixed"]["threshold_scale"] = NOMINAL_SCALE
    per_policy["best_static"]["threshold_scale"] = best
    per_policy["best_static"]["chosen_because"] = why_best
    for k in ("fixed", "best_static"):
        per_policy[k]["clock_mhz"] = float(runs[k][0].clock_mhz[0])
    warnings = [f"period {d.period} ({d.period * period_s:g} s): {d.warning}" for d in decisions if d.warning]
    for w in warnings:
        log(f"warning: {w}")

    summary = {
        "run": run_dir.name, "out_dir": str(out), "device": dev.name, "power_source": dev.power_source,
        "power_model": model.label,
        "stream": stream.source, "duration_s": n * period_s, "periods": n, "period_s": period_s,
        "readout_window_steps": 512, "readout_hop_steps": period_steps, "warmup_steps": warmup_steps,
        "budget_trace": [{"time_s": t, "budget_uw": b} for t, b in zip(trace.times_s, trace.budgets_uw)],
        "settle_periods": settle_periods, "over_budget_target": over_budget_target,
        "infeasible_fraction": float(np.mean(~feasible)),
        "policies": per_policy,
        "static_candidates": [{"threshold_scale": s_, **{k: v for k, v in m.items() if k != "scored_windows"}}
                              for s_, m in sorted(static_metrics.items())],
        "prior": [asdict(p) for p in ctx.points], "prior_dropped": list(ctx.dropped),
        "controller_settings": asdict(s), "warnings": warnings,
    }
    out.mkdir(parents=True, exist_ok=True)
    _write_timeline(out / TIMELINE_CSV, t_start, budgets, runs, decisions, truth, feasible)
    atomic_write_json(out / SUMMARY_JSON, summary)
    if plot:
        plot_control(out / PLOT_PNG, t_start, budgets, runs, truth, feasible, summary)
    log(format_summary(summary))
    return summary


TIMELINE_COLUMNS = ["period", "time_s", "budget_uw", "power_uw", "threshold_scale", "clock_mhz", "prediction",
                    "truth", "predicted_uw", "measured_uw", "gain", "headroom", "write", "action", "reason",
                    "feasible", "fixed_power_uw", "fixed_prediction", "best_static_power_uw",
                    "best_static_prediction"]


def _write_timeline(path: Path, t: np.ndarray, budgets: np.ndarray, runs: dict[str, tuple[PolicyRun, np.ndarray]],
                    decisions: Sequence[Decision], truth: np.ndarray, feasible: np.ndarray) -> None:
    import io

    ctl, ctl_pred = runs["controller"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(TIMELINE_COLUMNS)
    for p, d in enumerate(decisions):
        w.writerow([p, f"{t[p]:g}", f"{budgets[p]:.1f}", f"{ctl.power_uw[p]:.2f}", f"{d.scale:g}",
                    f"{d.clock_mhz:.4g}", int(ctl_pred[p]), int(truth[p]), f"{d.predicted_uw:.2f}",
                    "" if d.measured_uw is None else f"{d.measured_uw:.2f}", f"{d.gain:.4f}", f"{d.headroom:.4f}",
                    int(d.write), d.action, d.reason, int(feasible[p]), f"{runs['fixed'][0].power_uw[p]:.2f}",
                    int(runs["fixed"][1][p]), f"{runs['best_static'][0].power_uw[p]:.2f}",
                    int(runs["best_static"][1][p])])
    atomic_write_text(path, buf.getvalue())


def format_summary(summary: dict[str, Any]) -> str:
    """The comparison table (one line per policy)."""
    lines = [f"{'policy':12s} {'scale':>6s} {'over budget':>11s} {'settled':>8s} {'accuracy':>8s} "
             f"{'mean uW':>8s} {'energy mJ':>9s}"]
    for k in POLICIES:
        m = summary["policies"][k]
        sc = "adapt" if k == "controller" else f"{m['threshold_scale']:g}"
        lines.append(f"{k:12s} {sc:>6s} {m['time_over_budget_fraction']:11.1%} "
                     f"{m['time_over_budget_fraction_settled']:8.1%} {m['accuracy']:8.3f} "
                     f"{m['mean_power_uw']:8.0f} {m['energy_uj'] / 1e3:9.1f}")
    return "\n".join(lines)


def plot_control(path: Path, t: np.ndarray, budgets: np.ndarray, runs: dict[str, tuple[PolicyRun, np.ndarray]],
                 truth: np.ndarray, feasible: np.ndarray, summary: dict[str, Any]) -> Path:
    """Power against the budget, the controller's threshold and clock, and accuracy over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(3, 1, figsize=(12, 9), sharex=True)
    colors = {"controller": "C0", "fixed": "C3", "best_static": "C2"}
    for k, (r, _) in runs.items():
        m = summary["policies"][k]
        lab = k if k == "controller" else f"{k} (scale {m['threshold_scale']:g})"
        ax[0].plot(t, r.power_uw, color=colors[k], lw=0.8, alpha=0.85, label=lab)
    ax[0].step(t, budgets, where="post", color="k", lw=1.5, label="budget")
    bad = ~feasible
    if bad.any():
        ax[0].fill_between(t, 0, 1, where=bad, transform=ax[0].get_xaxis_transform(), color="0.85",
                           label="infeasible (no setting fits)")
    ax[0].set(ylabel="total power (uW)", title=f"{summary['run']} on {summary['device']} "
              f"({summary['power_source']} power), {summary['stream']}")
    ctl = runs["controller"][0]
    ax[1].step(t, ctl.scale, where="post", color="C0", label="threshold scale")
    ax[1].set(ylabel="threshold scale")
    tw = ax[1].twinx()
    tw.step(t, ctl.clock_mhz, where="post", color="C1", ls="--", label="clock (MHz)")
    tw.set_ylabel("clock (MHz)")
    scored = truth >= 0
    win = max(1, int(round(60 / summary["period_s"])))
    for k, (r, pred) in runs.items():
        hit = np.where(scored, (pred == truth).astype(float), 0.0)
        num = np.convolve(hit, np.ones(win), "same")
        den = np.convolve(scored.astype(float), np.ones(win), "same")
        ax[2].plot(t, np.where(den > 0, num / np.maximum(den, 1), np.nan), color=colors[k], lw=0.9,
                   label=f"{k}: {summary['policies'][k]['accuracy']:.3f}")
    ax[2].set(xlabel="time (s)", ylabel=f"accuracy ({win * summary['period_s']:g} s running)", ylim=(0, 1.02))
    for a in (ax[0], ax[2]):
        a.legend(fontsize=8, loc="lower left")
        a.grid(alpha=0.3)
    ax[1].legend(loc="upper left", fontsize=8)
    tw.legend(loc="upper right", fontsize=8)
    ax[1].grid(alpha=0.3)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return path


__all__ = ["BudgetTrace", "BudgetTraceError", "GuardedWriter", "POLICIES", "PolicyRun", "choose_best_static",
           "format_summary", "parse_budget_trace", "plot_control", "policy_metrics", "prior_points",
           "read_budget_trace", "run_closed_loop", "run_control", "run_static", "select_prior_rows",
           "settled_mask", "static_power_uw", "write_budget_trace"]
