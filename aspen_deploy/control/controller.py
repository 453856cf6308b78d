"""Runtime power controller: pure decision logic, one call per control period.

The functional core is ``step(state, measurement, budget_uw) -> (new_state, Decision)``; it never
touches a device. `aspen_deploy.control.run` turns decisions into register writes.

**Prior.** A table of operating points from the power sweep: threshold scale ``s_i`` at clock
``f_i`` drew total power ``P_i`` (core + IO) with accuracy ``A_i``, needing clock ``r_i`` for
real time. ``S_i`` is the part of ``P_i`` that does not depend on activity (idle core, the fixed
cycles of every step, IO), from the power model.

**Feedback correction.** The activity-dependent part is scaled by a gain ``g`` learned from what
is measured, and clock changes move the static part along the model's slope ``k`` (uW/MHz):

    pred_i(f) = S_i + k (f - f_i) + g (P_i - S_i)

After a period measured at point ``c`` and clock ``f`` with power ``m`` (valid, see below):

    g_obs = (m - S_c - k (f - f_c)) / (P_c - S_c)
    r     = (m - pred_c(f)) / pred_c(f)                      relative error of the prediction used
    g    <- g + a (g_obs - g),  a = alpha_up if r > max(jump_min, jump_sigmas sigma) else alpha
                                                             (g clipped to gain_limits)
    e     = clip(r, -e_max, e_max)
    v    <- v + beta (e^2 - v),  sigma = sqrt(v)

A reading well above the prediction is a jump in activity (the wearer starts walking: the
activity part of the power can double within a second); ``alpha_up`` near 1 adopts it at once to
protect the budget. Anything smaller is treated as jitter and averaged (``alpha``), so that one
noisy reading does not move the setting; downward changes are bought back at the same pace.
``sigma`` is the period-to-period jitter the headroom covers; the clip ``e_max`` keeps the rare
large steps, which the gain absorbs, from inflating the headroom for the minutes after.

**Choice.** With headroom ``h = min(headroom + z sigma, max_headroom)`` a point fits when
``pred_i(f_i*) <= B (1 - h)``, where ``f_i*`` is the lowest legal chip clock at or above the
point's required clock (the learned one: the largest seen while running it). Among fitting
points the controller wants the most accurate (ties: the lower power). Then:

* current point does not fit (budget fell, activity rose): move down now;
* a more accurate point fits with ``pred <= B (1 - h - up_headroom)`` for ``up_hold_periods``
  periods in a row, at least ``min_up_interval_periods`` since the last write, and it gains at
  least ``accuracy_hysteresis``: move up (hysteresis in level and in time);
* nothing fits: the lowest-power point, and a warning once per budget value when even its
  predicted power is above the budget (infeasible budget).

**Safety.** A measurement is invalid when missing (``None``, no samples), not finite, negative,
or implausible (``m / pred`` outside ``[1 / plausible_ratio, plausible_ratio]``); invalid ones are
not learned from. After ``max_bad_periods`` invalid periods in a row the controller falls back to
the lowest-power point and stays there until ``recover_periods`` valid periods in a row.
Before every write the setting is range-checked (`RegisterLimits.check`): integer hidden
thresholds ``round(s thr)`` inside the int16 register without clipping (positive ones >= 1) and
a clock from `chip.CLOCKS_MHZ`; points that can never pass are dropped when the context is made.
At most one write per period (``min_write_interval_periods``); writes that raise power are also
held to ``min_up_interval_periods``. Every decision carries its reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.cycles import lowest_clock


class ControlError(ValueError):
    """A controller input that cannot be used (the message says what is wrong and what to do)."""


class RegisterRangeError(ControlError):
    """A threshold scale or clock whose register values the chip cannot take."""


# ---- data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OperatingPoint:
    """One row of the prior (module docstring): scale, its sweep clock, power, accuracy, needed clock."""

    scale: float
    clock_mhz: float
    power_uw: float
    accuracy: float
    required_mhz: float
    static_uw: float = 0.0

    def __post_init__(self) -> None:
        for k in ("scale", "clock_mhz", "power_uw", "accuracy", "required_mhz", "static_uw"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ControlError(f"operating point {k} must be a finite number, got {v!r}")
        if self.scale <= 0 or self.power_uw <= 0 or self.clock_mhz <= 0:
            raise ControlError(f"operating point needs a positive scale, clock and power, got {self}")
        if not 0 <= self.static_uw < self.power_uw:
            raise ControlError(f"operating point static power {self.static_uw:g} uW must lie in "
                               f"[0, {self.power_uw:g}) uW (scale {self.scale:g})")


@dataclass(frozen=True)
class RegisterLimits:
    """What the registers can take: the base hidden thresholds' extremes and the legal clocks."""

    thr_pos_min: int  # smallest positive base threshold (0: none)
    thr_pos_max: int  # largest positive base threshold (0: none)
    thr_nonpos_min: int  # most negative base threshold (0: none)
    clocks: tuple[float, ...] = tuple(chip.CLOCKS_MHZ)

    @classmethod
    def from_thresholds(cls, thresholds: Iterable[int]) -> "RegisterLimits":
        t = np.asarray(list(thresholds), dtype=np.int64)
        pos, neg = t[t > 0], t[t <= 0]
        return cls(int(pos.min()) if pos.size else 0, int(pos.max()) if pos.size else 0,
                   int(neg.min()) if neg.size else 0)

    @classmethod
    def from_config(cls, config: Any) -> "RegisterLimits":
        return cls.from_thresholds(config.hidden.threshold)

    def check(self, scale: float, clock_mhz: float) -> None:
        """Raise `RegisterRangeError` unless every register value of (scale, clock) is legal:
        ``1 <= round(s t) <= THRESHOLD_MAX`` for positive base thresholds ``t`` (no clipping),
        ``round(s t) >= THRESHOLD_MIN`` for the others, and the clock one of `chip.CLOCKS_MHZ`."""
        if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise RegisterRangeError(f"threshold scale {scale!r} is not a positive number")
        if self.thr_pos_max and round(scale * self.thr_pos_max) > chip.THRESHOLD_MAX:
            raise RegisterRangeError(f"threshold scale {scale:g} puts threshold {self.thr_pos_max} at "
                                     f"{round(scale * self.thr_pos_max)} > {chip.THRESHOLD_MAX} (int16); use a scale "
                                     f"<= {self.scale_range()[1]:.4g}")
        if self.thr_pos_min and round(scale * self.thr_pos_min) < 1:
            raise RegisterRangeError(f"threshold scale {scale:g} rounds threshold {self.thr_pos_min} to "
                                     f"{round(scale * self.thr_pos_min)} (< 1); use a scale >= "
                                     f"{self.scale_range()[0]:.4g}")
        if self.thr_nonpos_min and round(scale * self.thr_nonpos_min) < chip.THRESHOLD_MIN:
            raise RegisterRangeError(f"threshold scale {scale:g} puts threshold {self.thr_nonpos_min} below "
                                     f"{chip.THRESHOLD_MIN} (int16)")
        if not isinstance(clock_mhz, (int, float)) or not any(abs(clock_mhz - c) < 1e-6 for c in self.clocks):
            legal = ", ".join(f"{c:.4g}" for c in self.clocks)
            raise RegisterRangeError(f"clock {clock_mhz!r} MHz is not a Xylo IMU core clock; use one of {legal}")

    def scale_range(self) -> tuple[float, float]:
        """(smallest, largest) legal scale, approximately (rounding decides the edges)."""
        lo = 0.5 / self.thr_pos_min if self.thr_pos_min else 0.0
        his = [(chip.THRESHOLD_MAX + 0.5) / self.thr_pos_max] if self.thr_pos_max else []
        if self.thr_nonpos_min:
            his.append((chip.THRESHOLD_MIN - 0.5) / self.thr_nonpos_min)
        return lo, min(his) if his else math.inf

    def legal(self, scale: float, clock_mhz: float) -> bool:
        try:
            self.check(scale, clock_mhz)
        except RegisterRangeError:
            return False
        return True


@dataclass(frozen=True)
class ControllerSettings:
    """Tuning of the controller (module docstring for the equations). Periods are control periods."""

    period_s: float = 1.0
    headroom: float = 0.02
    headroom_sigmas: float = 2.0
    max_headroom: float = 0.25
    up_headroom: float = 0.03
    up_hold_periods: int = 3
    min_up_interval_periods: int = 5
    min_write_interval_periods: int = 1
    accuracy_hysteresis: float = 0.003
    alpha_up: float = 1.0
    alpha: float = 0.3
    jump_sigmas: float = 3.0
    jump_min: float = 0.05
    beta: float = 0.1
    error_clip: float = 0.1
    gain_limits: tuple[float, float] = (0.2, 5.0)
    max_bad_periods: int = 2
    recover_periods: int = 3
    plausible_ratio: float = 3.0
    uw_per_mhz: float = 30.1  # total power slope with clock (PowerModel core_uw_per_mhz + io_uw_per_mhz)

    def __post_init__(self) -> None:
        checks = [("period_s", self.period_s > 0), ("headroom", 0 <= self.headroom < 1),
                  ("headroom_sigmas", self.headroom_sigmas >= 0),
                  ("max_headroom", self.headroom <= self.max_headroom < 1),
                  ("up_headroom", 0 <= self.up_headroom < 1), ("up_hold_periods", self.up_hold_periods >= 1),
                  ("min_up_interval_periods", self.min_up_interval_periods >= 1),
                  ("min_write_interval_periods", self.min_write_interval_periods >= 1),
                  ("accuracy_hysteresis", self.accuracy_hysteresis >= 0), ("alpha_up", 0 < self.alpha_up <= 1),
                  ("alpha", 0 < self.alpha <= 1), ("jump_sigmas", self.jump_sigmas >= 0),
                  ("jump_min", self.jump_min >= 0), ("beta", 0 < self.beta <= 1),
                  ("error_clip", self.error_clip > 0),
                  ("gain_limits", 0 < self.gain_limits[0] <= 1 <= self.gain_limits[1]),
                  ("max_bad_periods", self.max_bad_periods >= 1), ("recover_periods", self.recover_periods >= 1),
                  ("plausible_ratio", self.plausible_ratio > 1), ("uw_per_mhz", self.uw_per_mhz >= 0)]
        bad = [k for k, ok in checks if not ok]
        if bad:
            what = ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            raise ControlError(f"controller setting(s) out of range: {what}")


@dataclass(frozen=True)
class ControllerContext:
    """What does not change while running: the legal prior points, register limits, settings."""

    points: tuple[OperatingPoint, ...]
    limits: RegisterLimits
    settings: ControllerSettings
    dropped: tuple[str, ...] = ()  # why prior points were left out


@dataclass(frozen=True)
class Measurement:
    """Power over the last control period (``None``: no samples) and, if known, the clock its busiest
    step needed (``max cycles x margin / dt``)."""

    power_uw: float | None
    required_mhz: float | None = None


@dataclass(frozen=True)
class ControllerState:
    ctx: ControllerContext
    period: int = 0
    point: int | None = None  # index into ctx.points of the setting now written
    clock_mhz: float | None = None
    gain: float = 1.0
    var: float = 0.0
    required_mhz: tuple[float, ...] = ()
    last_write: int = -(10**9)
    up_streak: int = 0
    bad_streak: int = 0
    good_streak: int = 0
    fallback: bool = False
    warned_budget: float | None = None
    behind_warned: bool = False


@dataclass(frozen=True)
class Decision:
    """What to run in the next period and why. ``write``: registers change (threshold and/or clock)."""

    period: int
    scale: float
    clock_mhz: float
    write: bool
    action: str  # init | hold | down | up | clock | fallback | recover
    reason: str
    budget_uw: float
    predicted_uw: float
    gain: float
    headroom: float
    measured_uw: float | None = None
    measurement_ok: bool | None = None
    infeasible: bool = False
    warning: str | None = None


# ---- context -------------------------------------------------------------------------------------
def make_context(points: Iterable[OperatingPoint], limits: RegisterLimits,
                 settings: ControllerSettings | None = None) -> ControllerContext:
    """Keep the prior points the chip can run: registers in range and a clock fast enough for real time."""
    settings = settings or ControllerSettings()
    keep: list[OperatingPoint] = []
    dropped: list[str] = []
    for p in sorted(points, key=lambda q: q.scale):
        f = lowest_clock(p.required_mhz, limits.clocks)
        if f is None:
            dropped.append(f"scale {p.scale:g}: needs {p.required_mhz:.3g} MHz, above the top clock")
            continue
        try:
            limits.check(p.scale, f)
        except RegisterRangeError as e:
            dropped.append(f"scale {p.scale:g}: {e}")
            continue
        if any(abs(q.scale - p.scale) < 1e-9 for q in keep):
            dropped.append(f"scale {p.scale:g}: duplicate")
            continue
        keep.append(p)
    if not keep:
        why = "; ".join(dropped) or "the prior is empty"
        raise ControlError(f"no usable operating point in the prior ({why}); run 'aspen power-sweep' on this run")
    return ControllerContext(tuple(keep), limits, settings, tuple(dropped))


def init_state(ctx: ControllerContext) -> ControllerState:
    return ControllerState(ctx=ctx, required_mhz=tuple(p.required_mhz for p in ctx.points))


# ---- the equations -------------------------------------------------------------------------------
def predict_uw(p: OperatingPoint, clock_mhz: float, gain: float, uw_per_mhz: float) -> float:
    """``pred = S + k (f - f_p) + g (P - S)``."""
    return p.static_uw + uw_per_mhz * (clock_mhz - p.clock_mhz) + gain * (p.power_uw - p.static_uw)


def observed_gain(p: OperatingPoint, clock_mhz: float, measured_uw: float, uw_per_mhz: float) -> float:
    """``g_obs = (m - S - k (f - f_p)) / (P - S)``."""
    return (measured_uw - p.static_uw - uw_per_mhz * (clock_mhz - p.clock_mhz)) / (p.power_uw - p.static_uw)


def check_measurement(m: Measurement | None, predicted_uw: float, plausible_ratio: float) -> str | None:
    """None when the measurement can be used, else why not."""
    if m is None or m.power_uw is None:
        return "no power measurement"
    v = m.power_uw
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return f"power reading {v!r} is not a number"
    if v < 0:
        return f"power reading {v:.1f} uW is negative"
    if predicted_uw > 0 and not (predicted_uw / plausible_ratio <= v <= predicted_uw * plausible_ratio):
        return (f"power reading {v:.1f} uW is implausible (predicted {predicted_uw:.1f} uW, more than "
                f"x{plausible_ratio:g} apart)")
    return None


def _clocks(state: ControllerState) -> list[float | None]:
    """Per point, the lowest legal clock at or above its learned required clock (None: none is)."""
    return [lowest_clock(r, state.ctx.limits.clocks) for r in state.required_mhz]


def learn(st: ControllerState, m: Measurement | None) -> tuple[ControllerState, str | None]:
    """The feedback half of `step`: check the last period's reading and, when it is valid, update the
    gain, the jitter estimate and the point's required clock (module docstring). Returns the new
    state and why the reading was rejected (None: used)."""
    s, k = st.ctx.settings, st.ctx.settings.uw_per_mhz
    assert st.point is not None and st.clock_mhz is not None
    cur = st.ctx.points[st.point]
    pred_cur = predict_uw(cur, st.clock_mhz, st.gain, k)
    why_bad = check_measurement(m, pred_cur, s.plausible_ratio)
    if why_bad is not None:
        return replace(st, bad_streak=st.bad_streak + 1, good_streak=0), why_bad
    assert m is not None and m.power_uw is not None
    power = float(m.power_uw)
    r = (power - pred_cur) / pred_cur
    a = s.alpha_up if r > max(s.jump_min, s.jump_sigmas * math.sqrt(st.var)) else s.alpha
    gain = float(np.clip(st.gain + a * (observed_gain(cur, st.clock_mhz, power, k) - st.gain), *s.gain_limits))
    e = float(np.clip(r, -s.error_clip, s.error_clip))
    req = list(st.required_mhz)
    if m.required_mhz is not None and math.isfinite(m.required_mhz):
        req[st.point] = max(req[st.point], float(m.required_mhz))  # real time is a hard limit: keep the worst
    return replace(st, gain=gain, var=st.var + s.beta * (e * e - st.var), required_mhz=tuple(req), bad_streak=0,
                   good_streak=st.good_streak + 1), None


def step(state: ControllerState, measurement: Measurement | None, budget_uw: float) -> tuple[ControllerState, Decision]:
    """One control period (module docstring): learn from the last period's measurement, decide the next.

    ``measurement`` is what the setting of the previous decision drew (ignored on the first call).
    """
    if not isinstance(budget_uw, (int, float)) or not math.isfinite(budget_uw) or budget_uw <= 0:
        raise ControlError(f"power budget must be a positive number of uW, got {budget_uw!r}")
    ctx, s = state.ctx, state.ctx.settings
    pts = ctx.points
    k = s.uw_per_mhz
    st = state
    measured: float | None = None
    ok: bool | None = None
    why_bad: str | None = None

    # 1. feedback from the last period
    if st.point is not None:
        st, why_bad = learn(st, measurement)
        ok = why_bad is None
        v = None if measurement is None else measurement.power_uw
        measured = float(v) if isinstance(v, (int, float)) else None

    clocks = _clocks(st)
    usable = [i for i, f in enumerate(clocks) if f is not None and ctx.limits.legal(pts[i].scale, f)]
    behind = None
    if not usable:  # every point has needed more than the top clock: the least demanding one, at the top clock
        top = max(ctx.limits.clocks)
        i = min(range(len(pts)), key=lambda j: st.required_mhz[j])
        clocks[i] = top
        usable = [i]
        behind = (f"no setting keeps real time (the least demanding, scale {pts[i].scale:g}, has needed "
                  f"{st.required_mhz[i]:.3g} MHz): running it at the top clock {top:.4g} MHz")
    pred = {i: predict_uw(pts[i], clocks[i], st.gain, k) for i in usable}  # type: ignore[arg-type]
    lowest = min(usable, key=lambda i: (pred[i], -pts[i].accuracy))
    h = min(s.headroom + s.headroom_sigmas * math.sqrt(st.var), s.max_headroom)
    cap = budget_uw * (1 - h)
    infeasible = pred[lowest] > budget_uw
    warning = None
    if st.warned_budget is not None and st.warned_budget != budget_uw:
        st = replace(st, warned_budget=None)  # a new budget value may be warned about again
    if infeasible and st.warned_budget is None:
        p = pts[lowest]
        warning = (f"budget {budget_uw:.0f} uW is below the lowest power the chip can reach here "
                   f"(~{pred[lowest]:.0f} uW at threshold scale {p.scale:g}, {clocks[lowest]:.4g} MHz): "
                   "holding the lowest-power setting")
        st = replace(st, warned_budget=budget_uw)

    since_write = st.period - st.last_write
    target: int
    action: str
    reason: str
    up_streak = 0
    fits = [i for i in usable if pred[i] <= cap]
    best = max(fits, key=lambda i: (pts[i].accuracy, -pred[i])) if fits else lowest  # most accurate that fits
    if st.point is None:
        target = best
        action, reason = "init", (f"start at the most accurate point predicted to fit {cap:.0f} uW" if fits
                                  else "start at the lowest-power point: nothing is predicted to fit")
    elif st.bad_streak >= s.max_bad_periods:
        target, action = lowest, "fallback"
        reason = f"{why_bad} for {st.bad_streak} period(s): fall back to the lowest-power setting"
        st = replace(st, fallback=True)
    elif st.fallback and st.good_streak < s.recover_periods:
        target, action = lowest, "fallback"
        reason = (f"holding the lowest-power setting until {s.recover_periods} valid measurements in a row "
                  f"({st.good_streak} so far)" + (f"; {why_bad}" if why_bad else ""))
    else:
        if st.fallback:
            st = replace(st, fallback=False)
        cur = st.point
        cur_ok = cur in pred and pred[cur] <= cap
        if why_bad is not None:
            target, action = cur, "hold"
            reason = (f"{why_bad}: keep the setting and learn nothing "
                      f"({st.bad_streak}/{s.max_bad_periods} before fallback)")
            if not cur_ok and (cur not in pred or since_write >= s.min_write_interval_periods):
                target, action = best, "down"
                reason = (f"{why_bad}; budget {budget_uw:.0f} uW: predicted {pred.get(cur, math.inf):.0f} uW is over "
                          f"{cap:.0f} uW, move to the best point that fits")
        elif not cur_ok:
            if since_write >= s.min_write_interval_periods or cur not in pred:
                target, action = best, "down" if best != cur else "hold"
                reason = (f"predicted {pred.get(cur, math.inf):.0f} uW is over the {cap:.0f} uW cap "
                          f"(budget {budget_uw:.0f} uW, headroom {h:.1%})"
                          + ("; nothing fits, lowest-power point" if not fits else ""))
            else:
                target, action = cur, "hold"
                reason = f"over the cap but wrote {since_write} period(s) ago (write-rate limit)"
        elif best == cur:
            target, action = cur, "hold"
            reason = f"most accurate point that fits {cap:.0f} uW (predicted {pred[cur]:.0f} uW)"
        else:
            gain_acc = pts[best].accuracy - pts[cur].accuracy
            up_cap = budget_uw * (1 - h - s.up_headroom)
            raises = pred[best] > pred[cur]
            if gain_acc < s.accuracy_hysteresis:
                target, action = cur, "hold"
                reason = f"a better point would gain only {gain_acc:+.3f} accuracy (< {s.accuracy_hysteresis:g})"
            elif raises and pred[best] > up_cap:
                target, action = cur, "hold"
                reason = (f"scale {pts[best].scale:g} would fit the cap but not the up-move band "
                          f"({pred[best]:.0f} > {up_cap:.0f} uW)")
            elif raises and st.up_streak + 1 < s.up_hold_periods:
                target, action, up_streak = cur, "hold", st.up_streak + 1
                reason = (f"scale {pts[best].scale:g} fits: waiting {up_streak}/{s.up_hold_periods} periods "
                          "before moving up")
            elif raises and since_write < s.min_up_interval_periods:
                target, action, up_streak = cur, "hold", st.up_streak + 1
                reason = f"write-rate limit: last write {since_write} period(s) ago (< {s.min_up_interval_periods})"
            else:
                target = best
                action = "up" if raises else "down"
                reason = (f"scale {pts[best].scale:g} predicted {pred[best]:.0f} uW fits {cap:.0f} uW and gains "
                          f"{gain_acc:+.3f} accuracy")
    if behind:
        reason += "; " + behind
        if not st.behind_warned:
            warning = f"{warning}; {behind}" if warning else behind
    st = replace(st, behind_warned=behind is not None)
    if infeasible:
        reason += f"; infeasible budget: lowest-power point predicted {pred[lowest]:.0f} uW > {budget_uw:.0f} uW"

    f_target = clocks[target]
    assert f_target is not None
    if st.point == target and st.clock_mhz is not None and abs(f_target - st.clock_mhz) > 1e-9 and action == "hold":
        action = "clock"
        reason = (f"clock {st.clock_mhz:.4g} -> {f_target:.4g} MHz: the point now needs "
                  f"{st.required_mhz[target]:.3g} MHz for real time; " + reason)
    p = pts[target]
    ctx.limits.check(p.scale, f_target)  # never emit an illegal write, whatever the logic above did
    write = st.point != target or st.clock_mhz is None or abs(f_target - st.clock_mhz) > 1e-9
    decision = Decision(period=st.period, scale=p.scale, clock_mhz=f_target, write=write, action=action, reason=reason,
                        budget_uw=float(budget_uw), predicted_uw=float(pred[target]), gain=st.gain, headroom=h,
                        measured_uw=measured,
                        measurement_ok=ok, infeasible=infeasible, warning=warning)
    new = replace(st, period=st.period + 1, point=target, clock_mhz=f_target, up_streak=up_streak,
                  last_write=st.period if write else st.last_write)
    return new, decision


# ---- convenience ---------------------------------------------------------------------------------
@dataclass
class Controller:
    """A stateful wrapper around `step` (the caller keeps the decisions it wants)."""

    ctx: ControllerContext
    state: ControllerState = field(init=False)

    def __post_init__(self) -> None:
        self.state = init_state(self.ctx)

    def step(self, measurement: Measurement | None, budget_uw: float) -> Decision:
        self.state, d = step(self.state, measurement, budget_uw)
        return d


def points_from_rows(rows: Iterable[Mapping[str, Any]], static_uw: Mapping[float, float] | None = None
                     ) -> list[OperatingPoint]:
    """Operating points from power-sweep rows (``threshold_scale, clock_mhz, total_uw, accuracy,
    required_clock_mhz``); ``static_uw`` maps a clock to its activity-independent power (default 0).
    Later rows for the same scale replace earlier ones."""
    by_scale: dict[float, OperatingPoint] = {}
    for r in rows:
        try:
            f = float(r["clock_mhz"])
            pt = OperatingPoint(scale=float(r["threshold_scale"]), clock_mhz=f, power_uw=float(r["total_uw"]),
                                accuracy=float(r["accuracy"]),
                                required_mhz=float(r.get("required_clock_mhz", f) if r.get("required_clock_mhz")
                                                   not in (None, "") else f),
                                static_uw=float((static_uw or {}).get(f, 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise ControlError(f"power-sweep row cannot be used as a prior point ({e}): {dict(r)}") from None
        by_scale[round(pt.scale, 9)] = pt
    return [by_scale[k] for k in sorted(by_scale)]


__all__ = ["ControlError", "Controller", "ControllerContext", "ControllerSettings", "ControllerState", "Decision",
           "Measurement", "OperatingPoint", "RegisterLimits", "RegisterRangeError", "check_measurement",
           "init_state", "learn", "make_context", "observed_gain", "points_from_rows", "predict_uw",
           "step"]
