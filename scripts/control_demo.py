"""Controller demo: a budget trace that steps down and up, one step below what the chip can reach.

    PYTHONPATH=. python scripts/control_demo.py RUN_DIR [--duration S] [--out DIR] [--subjects 1,3,5]

The levels come from the run's power sweep (the controller's prior; measured first if missing),
with ``P_nom`` the power at threshold scale 1.0 and ``P_min`` the lowest-power point:

    high = 1.25 P_nom          the fixed nominal threshold fits nearly all the time
    mid  = P_nom               the fixed threshold breaks it whenever the wearer moves (the
                               stream's power swings with activity around the sweep's average)
    low  = (P_nom + P_min) / 2 fits only higher thresholds, and nothing while the wearer walks
    out  = 0.6 P_min           below what any threshold reaches (infeasible: warned, lowest power)

in six equal segments: high, mid, low, out, mid, high. It writes ``budget_trace.csv`` next to the
results and runs `aspen_deploy.control.run.run_control` on the virtual device.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aspen_deploy.control.run import BudgetTrace, format_summary, run_control, write_budget_trace  # noqa: E402


def demo_trace(p_nom: float, p_min: float, duration_s: float) -> BudgetTrace:
    """Six equal segments: high, mid, low, infeasible, mid, high (module docstring)."""
    levels = [1.25 * p_nom, p_nom, (p_nom + p_min) / 2, 0.6 * p_min, p_nom, 1.25 * p_nom]
    seg = duration_s / len(levels)
    return BudgetTrace(tuple(float(round(i * seg)) for i in range(len(levels))), tuple(round(b, 1) for b in levels))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--duration", type=float, default=None, help="seconds of stream (default: all of it)")
    ap.add_argument("--out", default=None, help="output folder (default RUN_DIR/control_demo)")
    ap.add_argument("--subjects", default=None,
                    help="HAPT subjects to stream instead of the run's test stream, e.g. 1,3,5 (for tuning)")
    ap.add_argument("--noise-uw", type=float, default=0.0, help="virtual power-monitor noise (uW)")
    a = ap.parse_args(argv)

    from aspen_deploy.control.controller import points_from_rows
    from aspen_deploy.control.run import select_prior_rows
    from aspen_deploy.control.stream import hapt_test_stream, stream_for_data
    from aspen_deploy.power.model import PowerModel
    from aspen_deploy.power_sweep import read_power_rows, run_power_sweep

    run_dir = Path(a.run_dir)
    out = Path(a.out) if a.out else run_dir / "control_demo"
    label = PowerModel().label
    rows = select_prior_rows(read_power_rows(run_dir / "power_sweep.csv"), run_dir.name, "virtual", label)
    if not rows:
        run_power_sweep(run_dir, "virtual", log=print)
        rows = select_prior_rows(read_power_rows(run_dir / "power_sweep.csv"), run_dir.name, "virtual", label)
    pts = points_from_rows(rows)
    p_nom = next(p.power_uw for p in pts if abs(p.scale - 1.0) < 1e-9)
    p_min = min(p.power_uw for p in pts)
    if a.subjects:
        stream = hapt_test_stream([int(s) for s in a.subjects.split(",")])
    else:
        stream = stream_for_data(json.loads((run_dir / "settings.json").read_text()).get("data", {}))
    duration = min(a.duration, stream.duration_s) if a.duration is not None else stream.duration_s
    trace = demo_trace(p_nom, p_min, duration)
    out.mkdir(parents=True, exist_ok=True)
    write_budget_trace(out / "budget_trace.csv", trace)
    print(f"budget trace (P_nom {p_nom:.0f} uW, P_min {p_min:.0f} uW): "
          + ", ".join(f"{t:g} s: {b:.0f} uW" for t, b in zip(trace.times_s, trace.budgets_uw)))
    summary = run_control(run_dir, "virtual", budget_trace=out / "budget_trace.csv", duration_s=duration,
                          out_dir=out, noise_uw=a.noise_uw, stream=stream, log=print)
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
