"""`aspen demo`: the main job, end to end on the HAPT recordings that ship with the install.

HAPT -> streaming IMU front end -> ASPEN (uniform:1.0,1.5) and fixed-threshold baseline trained
side by side (one process and one CPU core each) -> export -> Xylo software model at threshold
scale 1.0 (bit-accurate `xylosim`) -> threshold sweep (fast backend) -> summary.

Everything lands in OUT (see README, "Run directory"); with --resume an interrupted demo picks
up where it stopped (finished trainings, exports and sweep rows are kept).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path
from typing import Any, Callable

from aspen_deploy.io import atomic_write_json, atomic_write_text
from aspen_deploy.samplers import DEFAULT_ASPEN

DEMO_RUNS = {"aspen": DEFAULT_ASPEN, "baseline": "fixed:1.0"}
DATA = "hapt"
SEED = 0
REFERENCE_BACKEND = "xylosim"
REFERENCE_WINDOWS = 600  # the bit-accurate reference runs one window at a time: a subset is enough


def _train_child(name: str, sampler: str, profile: str, out: str, frontend: dict, resume: bool, position: int) -> dict:
    import torch
    from tqdm.auto import tqdm

    torch.set_num_threads(1)
    from aspen_deploy.train import TrainSettings, train_new
    from data_prep.pipeline import prepare_events

    data = prepare_events(DATA, frontend=frontend, seed=SEED)
    settings = TrainSettings(sampler=sampler, profile=profile, seed=SEED)
    return train_new(data, settings, Path(out) / name, resume=resume,
                     progress=lambda **kw: tqdm(position=position, leave=False, dynamic_ncols=True, **kw))


def run_demo(profile: str = "quick", out: Path = Path("demo_out"), backend: str = "fast", resume: bool = False,
             progress: Callable[..., Any] | None = None, log: Callable[[str], Any] = print) -> dict:
    from aspen_deploy.export import float_vs_chip, save_export, sweep_config
    from aspen_deploy.report import format_sweep_table, markdown_table
    from aspen_deploy.runs import load_run
    from aspen_deploy.sweep import plot_sweeps, stratified_subset
    from aspen_deploy.train import PROFILES
    from data_prep.pipeline import describe_frontend, prepare_events

    t_start = time.time()
    out.mkdir(parents=True, exist_ok=True)
    log(f"aspen demo ({profile} profile) -> {out}")
    data = prepare_events(DATA, frontend=None, seed=SEED, log=log)

    # 1. train both models at once, one core each
    todo = {n: s for n, s in DEMO_RUNS.items() if not ((out / n / "metrics.json").exists() and resume)}
    if todo:
        log(f"training {', '.join(todo)} ({PROFILES[profile].epochs} epochs, {len(data.train.y)} training windows)")
        ctx = mp.get_context("spawn")
        with ctx.Pool(len(todo)) as pool:
            jobs = [pool.apply_async(_train_child, (n, s, profile, str(out), data.frontend.to_dict(), resume, k))
                    for k, (n, s) in enumerate(todo.items())]
            for j in jobs:
                j.get()
    t_train = time.time() - t_start

    # 2. export, reference check on the Xylo software model, sweep
    n_sweep = PROFILES[profile].sweep_windows
    idx = stratified_subset(data.test.y, n_sweep, seed=0)
    idx_ref = stratified_subset(data.test.y, REFERENCE_WINDOWS, seed=0)
    log(f"sweeping {len(idx)} of {len(data.test.y)} test windows (stratified) per threshold scale; "
        f"{len(idx_ref)} on the bit-accurate reference")
    summary: dict[str, Any] = {"profile": profile, "data": data.spec, "frontend": data.frontend.to_dict(),
                               "test_windows": int(len(data.test.y)), "sweep_windows": int(len(idx)), "models": {}}
    curves = {}
    for name in DEMO_RUNS:
        run_dir = out / name
        run = load_run(run_dir)
        cfg = save_export(run, data)
        ref = float_vs_chip(run, data, cfg, REFERENCE_BACKEND, idx_ref)
        log(f"{name}: float {ref['float_accuracy']:.3f}, Xylo software model ({REFERENCE_BACKEND}) "
            f"{ref['chip_accuracy']:.3f} at threshold scale 1.0 on {len(idx_ref)} test windows")
        rows = sweep_config(run, cfg, data, backend=backend, windows=n_sweep, progress=progress)
        curves[name] = rows
        import json

        metrics = json.loads((run_dir / "metrics.json").read_text())
        summary["models"][name] = {**metrics, "sampler": DEMO_RUNS[name], "threshold_scale_1": ref, "sweep": rows}

    plot_sweeps(curves, out / "sweep.png")
    summary["seconds"] = {"total": time.time() - t_start, "training": t_train}
    atomic_write_json(out / "summary.json", summary)
    head = markdown_table(
        ["model", "sampler", "float test acc (all test windows)", f"float acc ({len(idx_ref)} windows)",
         f"Xylo software model acc ({REFERENCE_BACKEND}, scale 1.0)", "hidden spikes / window"],
        [[n, m["sampler"], m["float_test_accuracy"], m["threshold_scale_1"]["float_accuracy"],
          m["threshold_scale_1"]["chip_accuracy"], m["threshold_scale_1"]["chip_hidden_spikes_per_window"]]
         for n, m in summary["models"].items()])
    md = (f"# aspen demo, {profile} profile\n\nData: HAPT accelerometer, UCI test subjects, streaming front end "
          f"({describe_frontend(data.frontend)}).\n\n{head}\n\n## Threshold sweep ({backend} backend, {len(idx)} test windows)\n\n"
          f"{format_sweep_table(curves)}\n\nTotal time {summary['seconds']['total'] / 60:.1f} min.\n")
    atomic_write_text(out / "summary.md", md)
    log("\n" + md)
    return summary
