"""Power against firing threshold on a device (virtual or HDK), and calibration of the power model.

For each threshold scale (rows appended to ``RUN_DIR/power_sweep.csv`` as soon as measured;
rows already there are skipped, so an interrupted sweep resumes):

1. activity pass at the top clock (50 MHz, so that every step finishes): accuracy, hidden
   spikes and cycles per step from the spikes actually produced;
2. clock: ``"auto"`` picks the lowest chip clock with ``max cycles x margin / dt`` or more
   (`PowerModel.choose_clock`; the top clock, flagged ``realtime_ok = False``, when none is
   fast enough), or the fixed ``--clock``;
3. power pass at that clock with hidden-spike monitoring off: mean and standard deviation of
   the per-rail samples. ``power_source`` says whether they were measured or modelled; the
   ``*_model`` columns hold the power model's estimate for the same clock, cycles and
   step rate, to compare against a measurement.

`calibrate` fits the model's constants to the measured rows of such a CSV (`fit_power_model`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from aspen_deploy import chip
from aspen_deploy.config import XyloConfig
from aspen_deploy.devices import Device, DeviceError, parse_clock
from aspen_deploy.io import atomic_savefig
from aspen_deploy.power.model import FitReport, PowerModel, PowerModelError, fit_power_model
from aspen_deploy.sweep import append_row, read_rows, stratified_subset

CSV_NAME = "power_sweep.csv"
PNG_NAME = "power_sweep.png"
POWER_COLUMNS = ["model", "threshold_scale", "clock_setting", "clock_mhz", "required_clock_mhz", "realtime_ok",
                 "core_uw", "core_uw_std", "io_uw", "io_uw_std", "total_uw", "power_source", "power_samples",
                 "accuracy", "hidden_spikes_per_window", "cycles_per_step", "max_cycles_per_step", "steps_per_s",
                 "core_uw_model", "io_uw_model", "total_uw_model", "device", "windows", "power_model"]
TEXT_COLUMNS = {"model", "clock_setting", "power_source", "device", "power_model"}
REQUIRED_COLUMNS = ("model", "threshold_scale", "clock_mhz", "core_uw", "io_uw")
DEFAULT_POWER_SCALES = (0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.4)


class PowerSweepError(ValueError):
    """A power-sweep input that cannot be used (the message says what to do)."""


# ---- CSV ------------------------------------------------------------------------------------
def read_power_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a power_sweep.csv with numbers as floats and ``realtime_ok`` as bool; [] if absent."""
    return read_rows(path, columns=None, text=TEXT_COLUMNS, bools=("realtime_ok",), required=REQUIRED_COLUMNS,
                     error=PowerSweepError, kind="power sweep")


def append_power_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append one row (header first on a new file; a file with other columns is refused), flushed."""
    append_row(path, row, POWER_COLUMNS, check_header=True, error=PowerSweepError, kind="power sweep")


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes two rows the same measurement: model, scale, device, clock setting, number of windows,
    and for modelled power the power model (measured power does not depend on it)."""
    modelled = row.get("power_source") != "measured"
    windows = row.get("windows")
    return (row["model"], round(float(row["threshold_scale"]), 6), row.get("device", ""), row.get("clock_setting", ""),
            int(float(windows)) if windows not in (None, "") else None, row.get("power_model", "") if modelled else "")


def clock_setting_label(clock: float | str) -> str:
    return "auto" if clock == "auto" else f"{float(clock):g}"


# ---- one scale ---------------------------------------------------------------------------------
def measure_scale(device: Device, events: np.ndarray, y: np.ndarray, scale: float, clock: float | str,
                  power_model: PowerModel, dt: float = chip.DT_S) -> dict[str, Any]:
    """One row (module docstring, steps 1-3) for a loaded device. Raises `DeviceError` when the
    monitor returns no samples (too short a run), so that no row of NaNs is written."""
    device.set_threshold_scale(scale)
    device.set_clock(max(chip.CLOCKS_MHZ))
    r = device.run(events, record_activity=True)
    cycles = np.asarray(r.cycles_per_step, dtype=np.float64)
    n = len(events)
    f, required, ok = power_model.clock_for(cycles, clock, dt)
    device.set_clock(f)
    device.run(events, record_activity=False)
    samples = device.power_samples()
    if len(samples) == 0:
        raise DeviceError(f"the power monitor returned no samples at threshold scale {scale:g} "
                          f"({n} windows at {f:g} MHz); measure more windows (--windows)")
    p = samples.summary()
    sps = float(device.steps_per_s)
    est = power_model.estimate(cycles, dt=dt, clock=f, steps_per_s=sps)
    return {
        "threshold_scale": float(scale), "clock_mhz": f, "required_clock_mhz": required, "realtime_ok": bool(ok),
        "core_uw": p["core_uw"], "core_uw_std": p["core_uw_std"], "io_uw": p["io_uw"], "io_uw_std": p["io_uw_std"],
        "total_uw": p["total_uw"], "power_source": device.power_source, "power_samples": int(len(samples)),
        "accuracy": float(np.mean(r.prediction == y)),
        "hidden_spikes_per_window": float(np.sum(r.hidden_spike_counts)) / n,
        "cycles_per_step": float(cycles.mean()), "max_cycles_per_step": float(cycles.max()), "steps_per_s": sps,
        "core_uw_model": est.core_uw, "io_uw_model": est.io_uw, "total_uw_model": est.total_uw,
        "device": device.name, "windows": n,
    }


def sweep_power(config: XyloConfig, device: Device, events: np.ndarray, y: np.ndarray, model: str, out_dir: Path,
                scales: Sequence[float] = DEFAULT_POWER_SCALES, clock: float | str = "auto",
                power_model: PowerModel | None = None, progress: Callable[..., Any] | None = None,
                on_row: Callable[[dict[str, Any]], Any] | None = None, plot: bool = True) -> list[dict[str, Any]]:
    """Measure every scale not yet in ``out_dir/power_sweep.csv``; returns this model's rows (sorted).

    ``on_row`` is called after each row is appended (a progress hook; an exception it raises
    stops the sweep with every finished row saved).
    """
    clock = parse_clock(clock)
    power_model = power_model or getattr(device, "power_model", None) or PowerModel()
    # modelled rows depend on the model that made them (the device's), measured rows on none
    made_by = getattr(device, "power_model", None) if device.power_source == "modelled" else None
    label = (made_by or power_model).label
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / CSV_NAME
    rows = read_power_rows(csv_path)
    setting = clock_setting_label(clock)
    done = {_key(r) for r in rows}
    base = {"model": model, "device": device.name, "clock_setting": setting, "windows": len(events),
            "power_source": device.power_source, "power_model": label}
    todo = [s for s in scales if _key({**base, "threshold_scale": s}) not in done]
    if todo:
        device.load(config)
    bar = progress(total=len(todo), desc=f"power {model} ({device.name}, {len(events)} windows)") if progress else None
    try:
        for s in todo:
            row = {"model": model, "clock_setting": setting,
                   **measure_scale(device, events, y, s, clock, power_model, dt=config.dt), "power_model": label}
            append_power_row(csv_path, row)
            rows.append(row)
            if bar:
                bar.update(1)
            if on_row:
                on_row(row)
    finally:
        if bar:
            bar.close()
    same = _key({**base, "threshold_scale": 0.0})[2:]
    mine = sorted((r for r in rows if r["model"] == model and _key(r)[2:] == same),
                  key=lambda r: float(r["threshold_scale"]))
    if plot:
        plot_power_sweeps({model: mine}, out_dir / PNG_NAME)
    return mine


# ---- run directories --------------------------------------------------------------------------
def _default_windows(run_dir: Path, device: Device) -> int | None:
    if getattr(device, "default_windows", None) is not None:
        return int(device.default_windows)  # type: ignore[arg-type]
    from aspen_deploy.train import PROFILES

    try:
        profile = json.loads((run_dir / "settings.json").read_text()).get("profile", "quick")
    except (OSError, json.JSONDecodeError):
        profile = "quick"
    return PROFILES[profile].sweep_windows if profile in PROFILES else None


def run_power_sweep(run_dir: str | Path, device: Device | str, scales: Sequence[float] = DEFAULT_POWER_SCALES,
                    clock: float | str = "auto", windows: int | None = None, data: Any = None,
                    power_model: PowerModel | None = None, progress: Callable[..., Any] | None = None,
                    log: Callable[[str], Any] | None = None,
                    on_row: Callable[[dict[str, Any]], Any] | None = None) -> list[dict[str, Any]]:
    """Power sweep of a run's exported configuration on a stratified subset of its test split.

    ``device``: an open `Device`, or a name (opened and closed here). Exports the run first when
    ``xylo_config.json`` is missing. ``windows`` defaults to the device's default (HDK: 64)
    or else the run's profile. ``data``: the run's prepared data, if already loaded.
    """
    from aspen_deploy.devices import open_device

    log = log or (lambda s: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PowerSweepError(f"run directory not found: {run_dir}")
    if windows is not None and windows < 1:
        raise PowerSweepError(f"--windows must be at least 1, got {windows}")
    cfg_path = run_dir / "xylo_config.json"
    if data is None or not cfg_path.exists():
        from aspen_deploy.export import _data_for, save_export
        from aspen_deploy.runs import load_run

        run = load_run(run_dir)
        if data is None:
            data = _data_for(run, log)
        if not cfg_path.exists():
            log(f"{run_dir.name}: no xylo_config.json yet, exporting")
            save_export(run, data, log)
    cfg = XyloConfig.load(cfg_path)
    own = isinstance(device, str)
    dev: Device = open_device(device, power_model=power_model) if own else device  # type: ignore[arg-type]
    try:
        n = windows if windows is not None else _default_windows(run_dir, dev)
        idx = stratified_subset(data.test.y, n, seed=0)
        log(f"power sweep {run_dir.name}: {len(idx)} of {len(data.test.y)} test windows on {dev.name} "
            f"({dev.power_source} power), clock {clock_setting_label(clock)}")
        return sweep_power(cfg, dev, data.test.x[idx], data.test.y[idx], model=run_dir.name, out_dir=run_dir,
                           scales=scales, clock=clock, power_model=power_model, progress=progress, on_row=on_row)
    finally:
        if own:
            dev.close()


def power_sweep_runs(run_dirs: Sequence[str | Path], device: str, board: str | None = None,
                     scales: Sequence[float] = DEFAULT_POWER_SCALES, clock: float | str = "auto",
                     windows: int | None = None, power_model: PowerModel | None = None, noise_uw: float = 0.0,
                     combined_png: str | Path | None = None, progress: Callable[..., Any] | None = None,
                     log: Callable[[str], Any] | None = None) -> dict[str, list[dict[str, Any]]]:
    """`aspen power-sweep`: one device for several runs; each run gets its CSV and PNG, and with
    more than one run a combined plot (default: ``power_sweep.png`` in the runs' common folder)."""
    from aspen_deploy.devices import open_device

    log = log or (lambda s: None)
    if not run_dirs:
        raise PowerSweepError("give at least one run directory")
    paths = [Path(p) for p in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise PowerSweepError(f"run directory not found: {p}")
    names = [p.name for p in paths]
    if len(set(names)) != len(names):
        raise PowerSweepError(f"run directories must have distinct names (the CSV's 'model' column): {names}")
    curves: dict[str, list[dict[str, Any]]] = {}
    with open_device(device, board, power_model=power_model, noise_uw=noise_uw) as dev:
        for p in paths:
            curves[p.name] = run_power_sweep(p, dev, scales=scales, clock=clock, windows=windows,
                                             power_model=power_model, progress=progress, log=log)
    if len(paths) > 1:
        import os

        common = Path(os.path.commonpath([p.resolve() for p in paths]))
        if common == Path(common.anchor):  # runs share no folder but the root: use the working folder
            common = Path.cwd()
        out = Path(combined_png) if combined_png else common / PNG_NAME
        plot_power_sweeps(curves, out)
        log(f"wrote {out}")
    return curves


# ---- plots -------------------------------------------------------------------------------------
def plot_power_sweeps(curves: Mapping[str, Iterable[Mapping[str, Any]]], path: str | Path) -> Path:
    """Total (solid, with the spread of the samples) and core (dashed) power vs threshold; accuracy vs
    total power; clock used and clock needed vs threshold. One colour per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    sources: set[str] = set()
    for name, rows in curves.items():
        rows = sorted(rows, key=lambda r: float(r["threshold_scale"]))
        if not rows:
            continue
        s = [float(r["threshold_scale"]) for r in rows]
        tot = [float(r["total_uw"]) for r in rows]
        core = [float(r["core_uw"]) for r in rows]
        err = [math.hypot(float(r.get("core_uw_std") or 0), float(r.get("io_uw_std") or 0)) for r in rows]
        sources.update(str(r.get("power_source", "")) for r in rows)
        line = ax[0].errorbar(s, tot, yerr=err, fmt="o-", capsize=2, elinewidth=0.8, label=f"{name} total")[0]
        ax[0].plot(s, core, "--", color=line.get_color(), label=f"{name} core")
        ax[1].plot(tot, [float(r["accuracy"]) for r in rows], "o-", color=line.get_color(), label=name)
        ax[2].step(s, [float(r["clock_mhz"]) for r in rows], where="mid", color=line.get_color(), label=f"{name} clock")
        ax[2].plot(s, [float(r["required_clock_mhz"]) for r in rows], ":", color=line.get_color(),
                   label=f"{name} needed (max cycles x margin / dt)")
    src = "/".join(sorted(x for x in sources if x)) or "?"
    ax[0].set(xlabel="threshold scale", ylabel="power (uW), bars: spread over time",
              title=f"power vs threshold ({src}{': an estimate' if src == 'modelled' else ''})")
    ax[1].set(xlabel="total power (uW)", ylabel="accuracy", title="accuracy vs power")
    ax[2].set(xlabel="threshold scale", ylabel="core clock (MHz)", title="clock used and clock needed")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return Path(path)


# ---- calibration -------------------------------------------------------------------------------
def calibrate(measured_csv: str | Path, out_model_path: str | Path, prior: PowerModel | None = None,
              include_modelled: bool = False) -> tuple[PowerModel, FitReport]:
    """Fit the power model to the measured rows of a power-sweep CSV and write the model file.

    Only rows with ``power_source == "measured"`` are used unless ``include_modelled`` (fitting
    modelled rows just recovers the model that made them; useful for testing).
    """
    p = Path(measured_csv)
    if not p.is_file():
        raise PowerSweepError(f"measured CSV not found: {p}")
    rows = read_power_rows(p)
    use = [r for r in rows if include_modelled or r.get("power_source") == "measured"]
    if not use:
        raise PowerModelError(f"{p} has no measured rows (power_source 'measured'): run 'aspen power-sweep "
                              "--device hdk' first; modelled rows would only reproduce the model that made them")
    model, report = fit_power_model(use, prior=prior, source=str(p))
    model.save(out_model_path)
    return model, report


def format_fit_report(model: PowerModel, report: FitReport) -> str:
    lines = [f"calibrated on {report.n_rows} rows: core rms residual {report.core_rms_uw:.2f} uW, "
             f"io rms residual {report.io_rms_uw:.2f} uW"]
    for k in ("core_static_uw", "core_uw_per_mhz", "core_pj_per_cycle", "io_static_uw", "io_uw_per_mhz"):
        tag = "fitted" if k in report.fitted else "kept"
        lines.append(f"  {k:18s} {getattr(model, k):10.4g}  ({tag})")
    lines.extend(f"  note: {n}" for n in report.notes)
    return "\n".join(lines)



def format_power_table(curves: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """One line per (model, scale): clock, power per rail, accuracy, spikes; says measured or modelled."""
    head = (f"{'model':14s} {'scale':>5s} {'MHz':>5s} {'core uW':>8s} {'io uW':>7s} {'total uW':>8s} {'source':>8s} "
            f"{'acc':>5s} {'spikes/win':>10s} {'cycles/step':>11s}")
    lines = [head]
    for name, rows in curves.items():
        for r in rows:
            flag = "" if r.get("realtime_ok", True) else "  (too slow for real time)"
            lines.append(f"{name[:14]:14s} {float(r['threshold_scale']):5.2f} {float(r['clock_mhz']):5.2f} "
                         f"{float(r['core_uw']):8.1f} {float(r['io_uw']):7.1f} {float(r['total_uw']):8.1f} "
                         f"{str(r['power_source']):>8s} {float(r['accuracy']):5.3f} "
                         f"{float(r['hidden_spikes_per_window']):10.1f} {float(r['cycles_per_step']):11.0f}{flag}")
    return "\n".join(lines)
