"""`aspen` command line: demo, train, export, check, simulate, sweep.

User mistakes (bad paths, malformed files, configurations the chip refuses) end with a
one-line message and a non-zero exit code, never a traceback; bugs still show one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aspen_deploy.samplers import DEFAULT_ASPEN

EXIT_USER_ERROR = 2


def _progress():
    from tqdm.auto import tqdm

    return lambda **kw: tqdm(leave=False, dynamic_ncols=True, **kw)


def cmd_demo(a: argparse.Namespace) -> int:
    from aspen_deploy.demo import run_demo

    run_demo(profile=a.profile, out=Path(a.out), backend=a.backend, resume=a.resume, progress=_progress())
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    from aspen_deploy.samplers import parse_sampler
    from aspen_deploy.train import TrainSettings, train_new
    from data_prep.pipeline import prepare_events

    parse_sampler(a.sampler)  # fail fast, before loading data
    out = Path(a.out)
    frontend = None
    if a.resume and (out / "settings.json").is_file():
        import json

        frontend = json.loads((out / "settings.json").read_text()).get("frontend") or None
    data = prepare_events(a.data, frontend=frontend, seed=a.seed, log=print)
    settings = TrainSettings(sampler=a.sampler, profile=a.profile, epochs=a.epochs, seed=a.seed, model=a.model)
    metrics = train_new(data, settings, out, resume=a.resume, progress=_progress())
    print(f"{out}: float test accuracy {metrics['float_test_accuracy']:.3f} at threshold 1.0 "
          f"(best epoch {metrics['best_epoch']}, val {metrics['val_accuracy']:.3f})")
    return 0


def cmd_export(a: argparse.Namespace) -> int:
    from aspen_deploy.export import export_run

    path = export_run(Path(a.run_dir), log=print, approximate=a.approximate, nir=a.nir)
    print(f"wrote {path}")
    return 0


def cmd_import(a: argparse.Namespace) -> int:
    from aspen_deploy.nir_io import import_notes, import_nir

    data = None
    if a.data:
        from data_prep.pipeline import prepare_events

        data = prepare_events(a.data, seed=0, log=print)
    out = import_nir(a.model, a.out, graph_dt=a.graph_dt, approximate=a.approximate, data=data)
    for note in import_notes(out):
        print(f"note: {note}")
    print(f"wrote run directory {out} (aspen export / check / simulate / sweep accept it)")
    return 0


def cmd_check(a: argparse.Namespace) -> int:
    from aspen_deploy.config import XyloConfig
    from aspen_deploy.drc import check

    cfg = XyloConfig.load(a.config)
    violations = check(cfg)
    if violations:
        for v in violations:
            print(v.message())
        return EXIT_USER_ERROR
    print(f"{a.config}: OK, the Xylo IMU accepts this configuration "
          f"({cfg.n_inputs} inputs, {cfg.n_hidden} hidden, {cfg.n_outputs} outputs)")
    return 0


def cmd_simulate(a: argparse.Namespace) -> int:
    import numpy as np

    from aspen_deploy.backends import get_backend
    from aspen_deploy.config import XyloConfig
    from aspen_deploy.drc import require_valid
    from aspen_deploy.io import atomic_save_npz

    cfg = XyloConfig.load(a.config)
    require_valid(cfg)
    inp = Path(a.input)
    if not inp.is_file():
        raise FileNotFoundError(f"input file not found: {inp}")
    try:
        events = np.load(inp, allow_pickle=False)
    except ValueError as e:
        raise ValueError(f"{inp} is not a readable .npy array ({e})") from None
    backend = get_backend(a.backend)
    backend.load(cfg)
    backend.set_threshold_scale(a.threshold_scale)
    r = backend.run(events)
    out = atomic_save_npz(a.out, output_spikes=r.output_spikes, readout_vmem=r.readout_vmem,
                          hidden_spike_counts=r.hidden_spike_counts, prediction=r.prediction,
                          cycles_per_step=r.cycles_per_step)
    print(f"wrote {out}: {len(r.prediction)} window(s), backend {backend.name}, threshold scale {a.threshold_scale:g}")
    return 0


def cmd_sweep(a: argparse.Namespace) -> int:
    from aspen_deploy.export import sweep_run
    from aspen_deploy.sweep import DEFAULT_SCALES, parse_scales

    scales = parse_scales(a.scales) if a.scales else DEFAULT_SCALES
    rows = sweep_run(Path(a.run_dir), backend=a.backend, scales=scales, windows=a.windows, progress=_progress(),
                     log=print)
    from aspen_deploy.report import format_sweep_table

    print(format_sweep_table({Path(a.run_dir).name: rows}))
    return 0


def cmd_power_sweep(a: argparse.Namespace) -> int:
    from aspen_deploy.devices import parse_clock
    from aspen_deploy.power import PowerModel
    from aspen_deploy.power_sweep import DEFAULT_POWER_SCALES, format_power_table, power_sweep_runs
    from aspen_deploy.sweep import parse_scales

    scales = parse_scales(a.scales) if a.scales else DEFAULT_POWER_SCALES
    clock = parse_clock(a.clock)  # an illegal clock is refused before any work
    model = PowerModel.load(a.power_model) if a.power_model else None
    curves = power_sweep_runs(a.run_dirs, a.device, board=a.board, scales=scales, clock=clock, windows=a.windows,
                              power_model=model, noise_uw=a.noise_uw, progress=_progress(), log=print)
    print(format_power_table(curves))
    return 0


def cmd_calibrate(a: argparse.Namespace) -> int:
    from aspen_deploy.power_sweep import calibrate, format_fit_report

    model, report = calibrate(a.measured_csv, a.out, include_modelled=a.include_modelled)
    print(format_fit_report(model, report))
    print(f"wrote {a.out} (use it with --power-model {a.out})")
    return 0


def cmd_control(a: argparse.Namespace) -> int:
    from aspen_deploy.control.run import run_control

    summary = run_control(a.run_dir, a.device, budget_uw=a.budget_uw, budget_trace=a.budget_trace,
                          duration_s=a.duration, out_dir=a.out, board=a.board, power_model=a.power_model,
                          noise_uw=a.noise_uw, log=print, progress=_progress())
    print(f"wrote {summary['out_dir']}/control_timeline.csv, control_summary.json, control.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aspen", description="ASPEN spiking networks on the Xylo IMU: train, export, "
                                "check, simulate and sweep the firing threshold.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="main job: HAPT, ASPEN + fixed baseline, export, sweep, summary")
    d.add_argument("--profile", choices=["quick", "full"], default="quick")
    d.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    d.add_argument("--backend", default="fast", help="sweep backend: fast (default) or xylosim")
    d.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    d.set_defaults(fn=cmd_demo)

    t = sub.add_parser("train", help="train one model into a run directory")
    t.add_argument("--data", default="hapt", help="hapt (default), synthetic, or PATH.npz in the standard format")
    t.add_argument("--sampler", default=DEFAULT_ASPEN,
                   help=f"fixed | fixed:T | uniform:A,B | discrete:L1,L2,... (default {DEFAULT_ASPEN})")
    t.add_argument("--profile", choices=["quick", "full"], default="quick")
    t.add_argument("--epochs", type=int, default=None, help="override the profile's epoch count")
    t.add_argument("--model", default="aspen_synnet",
                   help="aspen_synnet (default), or another paper's model: mpsl, mps, stc_lif, s2tdpt")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="run directory to create")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    t.set_defaults(fn=cmd_train)

    e = sub.add_parser("export", help="quantize + map + check a run -> RUN_DIR/xylo_config.json")
    e.add_argument("run_dir")
    e.add_argument("--nir", action="store_true", help="also write RUN_DIR/model.nir (NIR graph of the float network)")
    e.add_argument("--approximate", action="store_true",
                   help="let a model the chip cannot express exactly be approximated (stc_lif: fixed leak)")
    e.set_defaults(fn=cmd_export)

    im = sub.add_parser("import", help="a NIR graph -> a run directory (refused, one line per reason, if the "
                        "chip cannot express it)")
    im.add_argument("model", metavar="MODEL.nir")
    im.add_argument("--out", required=True, help="run directory to create")
    im.add_argument("--data", default=None, help="hapt, synthetic or PATH.npz to evaluate on (an imported model "
                    "brings no data)")
    im.add_argument("--graph-dt", type=float, default=None, help="time step the graph was written for (s)")
    im.add_argument("--approximate", action="store_true", help="round what the chip cannot hold exactly, with notes")
    im.set_defaults(fn=cmd_import)

    c = sub.add_parser("check", help="design-rule check a configuration: exit 0 if the chip accepts it, else 2")
    c.add_argument("config")
    c.set_defaults(fn=cmd_check)

    s = sub.add_parser("simulate", help="run a configuration on input event counts")
    s.add_argument("config")
    s.add_argument("--input", required=True, help=".npy of int counts 0..15, shape (T, Nin) or (N, T, Nin)")
    s.add_argument("--backend", default="xylosim", help="xylosim (bit-accurate reference, default) or fast")
    s.add_argument("--threshold-scale", type=float, default=1.0)
    s.add_argument("--out", required=True, help="result .npz")
    s.set_defaults(fn=cmd_simulate)

    w = sub.add_parser("sweep", help="accuracy / spikes / cycles across threshold scales for a run")
    w.add_argument("run_dir")
    w.add_argument("--scales", default=None, help="A:B:STEP or S1,S2,... (default 0.6:2.4:0.1)")
    w.add_argument("--backend", default="fast", help="fast (default) or xylosim")
    w.add_argument("--windows", type=int, default=None,
                   help="stratified subset of the test split (default: the run's profile)")
    w.set_defaults(fn=cmd_sweep)

    ps = sub.add_parser("power-sweep", help="power (measured on an HDK or modelled) and accuracy across threshold "
                        "scales -> RUN_DIR/power_sweep.csv|png")
    ps.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="one or more run directories (e.g. ASPEN and "
                    "baseline: a combined plot goes to their common folder)")
    ps.add_argument("--device", required=True, choices=["virtual", "hdk"],
                    help="virtual: simulator + power model (modelled power); hdk: Xylo IMU HDK via samna (measured)")
    ps.add_argument("--scales", default=None, help="A:B:STEP or S1,S2,... (default 0.6,0.8,...,2.0,2.4)")
    ps.add_argument("--clock", default="auto",
                    help="auto (lowest clock that keeps real time for the measured cycles, default) or a clock in "
                         "MHz: 50, 25, 16.67, 12.5, 10, 8.33, 7.14, 6.25")
    ps.add_argument("--board", default=None, help="with several HDKs connected: board index or serial number")
    ps.add_argument("--power-model", default=None, metavar="FILE",
                    help="power model from 'aspen calibrate' (default: estimates from published figures)")
    ps.add_argument("--windows", type=int, default=None,
                    help="stratified subset of the test split (default: the run's profile; hdk: 64)")
    ps.add_argument("--noise-uw", type=float, default=0.0,
                    help="virtual device only: Gaussian measurement noise per power sample (uW)")
    ps.set_defaults(fn=cmd_power_sweep)

    cal = sub.add_parser("calibrate", help="fit the power model to measured power sweeps -> MODEL.json")
    cal.add_argument("measured_csv", metavar="MEASURED.csv", help="a power_sweep.csv measured with --device hdk")
    cal.add_argument("--out", required=True, metavar="MODEL.json")
    cal.add_argument("--include-modelled", action="store_true", help=argparse.SUPPRESS)  # tests only
    cal.set_defaults(fn=cmd_calibrate)

    ct = sub.add_parser("control", help="keep a device under a power budget by moving the threshold and clock; "
                        "compares the controller with the fixed and the best static threshold")
    ct.add_argument("run_dir", metavar="RUN_DIR")
    ct.add_argument("--device", required=True, choices=["virtual", "hdk"],
                    help="virtual: simulator + power model (modelled power); hdk: Xylo IMU HDK via samna (measured)")
    budget = ct.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-uw", type=float, default=None, metavar="X", help="a constant budget (uW, total power)")
    budget.add_argument("--budget-trace", default=None, metavar="FILE.csv",
                        help="CSV with columns time_s,budget_uw; each budget holds until the next row")
    ct.add_argument("--duration", type=float, default=None, metavar="S",
                    help="seconds of the test stream to run (default: all of it)")
    ct.add_argument("--out", default=None, metavar="DIR", help="output folder (default: RUN_DIR/control)")
    ct.add_argument("--board", default=None, help="with several HDKs connected: board index or serial number")
    ct.add_argument("--power-model", default=None, metavar="FILE",
                    help="power model from 'aspen calibrate' (default: estimates from published figures)")
    ct.add_argument("--noise-uw", type=float, default=0.0,
                    help="virtual device only: Gaussian measurement noise per power sample (uW)")
    ct.set_defaults(fn=cmd_control)
    return p


def _device_error() -> type:
    from aspen_deploy.devices import DeviceError  # light: samna is imported only when a board is opened

    return DeviceError


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except KeyboardInterrupt:
        print("aspen: interrupted; finished work is saved (run the same command again to continue; "
              "training commands take --resume)", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, NotImplementedError, ImportError, _device_error()) as e:
        from aspen_deploy.drc import DesignRuleError

        if isinstance(e, DesignRuleError):
            for v in e.violations:
                print(f"aspen: {v.message()}", file=sys.stderr)
        else:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            print(f"aspen: error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
