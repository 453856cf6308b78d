"""Run directory -> `xylo_config.json`, and the threshold sweep of a run's exported network."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from aspen_deploy.backends import get_backend
from aspen_deploy.config import XyloConfig
from aspen_deploy.ir import ChipNet, as_chipnet
from aspen_deploy.quantize import quantize, readout_vmax
from aspen_deploy.runs import Run, load_run
from aspen_deploy.sweep import DEFAULT_SCALES, run_sweep, stratified_subset
from aspen_deploy.train import PROFILES

CALIBRATION_WINDOWS = 256


def export_config(run: Run, data: Any, approximate: bool = False, chipnet: ChipNet | None = None) -> XyloConfig:
    """Quantize, map and check a loaded run; the readout scale is calibrated on training windows.

    ``data`` None (an imported model without data): no calibration, no front-end section.
    ``approximate`` lets models whose conversion can approximate do so (``stc_lif``);
    ``chipnet``: the run's `ChipNet` when the caller already has it.
    """
    chipnet = chipnet if chipnet is not None else as_chipnet(run, approximate)
    if data is None:
        return quantize(chipnet, metadata={"run": run.name, "model": run.settings.model})
    calib = data.train.x[stratified_subset(data.train.y, CALIBRATION_WINDOWS, seed=1)]
    return quantize(
        chipnet, readout_vmax=readout_vmax(run.net, calib), imu_if=data.frontend.to_dict(),
        metadata={"run": run.name, "sampler": run.settings.sampler, "model": run.settings.model,
                  "class_names": list(data.class_names), "data": run.settings.data, "approximate": approximate},
    )


def export_run(run_dir: Path, data: Any = None, log: Callable[[str], Any] = lambda s: None,
               approximate: bool = False, nir: bool = False) -> Path:
    """Write ``RUN_DIR/xylo_config.json`` (and ``RUN_DIR/model.nir`` with ``nir``)."""
    save_export(load_run(run_dir), data, log, approximate, nir)
    return run_dir / "xylo_config.json"


def save_export(run: Run, data: Any = None, log: Callable[[str], Any] = lambda s: None,
                approximate: bool = False, nir: bool = False) -> XyloConfig:
    """`export_config` of a loaded run (its data loaded when not given), saved as ``xylo_config.json``
    in the run directory (with ``nir`` also ``model.nir``, from the same `ChipNet`); returns it."""
    if data is None and run.settings.data:
        data = _data_for(run, log)
    chipnet = as_chipnet(run, approximate)
    cfg = export_config(run, data, approximate=approximate, chipnet=chipnet)
    if nir:
        from aspen_deploy.nir_io import export_nir

        log(f"wrote {export_nir(chipnet, run.path / 'model.nir')}")
    cfg.save(run.path / "xylo_config.json")
    return cfg


def sweep_run(run_dir: Path, backend: str = "fast", scales: Sequence[float] = DEFAULT_SCALES,
              windows: int | None = None, data: Any = None, progress: Callable[..., Any] | None = None,
              log: Callable[[str], Any] = lambda s: None) -> list[dict[str, Any]]:
    """Sweep the run's exported configuration on (a stratified subset of) its test split.

    Exports first if ``xylo_config.json`` is missing. ``windows`` defaults to the run's profile.
    """
    run = load_run(run_dir)
    if data is None:
        data = _data_for(run, log)
    cfg_path = run_dir / "xylo_config.json"
    cfg = XyloConfig.load(cfg_path) if cfg_path.exists() else save_export(run, data, log)
    return sweep_config(run, cfg, data, backend, scales, windows, progress, log)


def sweep_config(run: Run, cfg: XyloConfig, data: Any, backend: str = "fast", scales: Sequence[float] = DEFAULT_SCALES,
                 windows: int | None = None, progress: Callable[..., Any] | None = None,
                 log: Callable[[str], Any] = lambda s: None) -> list[dict[str, Any]]:
    """`sweep_run` of a loaded run and its configuration."""
    n = windows if windows is not None else PROFILES[run.settings.profile].sweep_windows
    idx = stratified_subset(data.test.y, n, seed=0)
    log(f"sweep {run.name}: {len(idx)} of {len(data.test.y)} test windows, backend {backend}")
    return run_sweep(cfg, get_backend(backend), data.test.x[idx], data.test.y[idx], data.n_classes,
                     model=run.name, out_dir=run.path, scales=scales, progress=progress)


def _data_for(run: Run, log: Callable[[str], Any]) -> Any:
    from data_prep.pipeline import prepare_events

    spec = run.settings.data
    if not spec:
        raise ValueError(f"{run.path} carries no data to evaluate on (an imported model): import it again "
                         f"with --data hapt|synthetic|PATH.npz")
    return prepare_events(spec.get("source_arg", spec.get("source")), frontend=run.settings.frontend or None,
                          seed=run.settings.seed, log=log)


def float_vs_chip(run: Run, data: Any, cfg: XyloConfig, backend: str, windows: np.ndarray) -> dict[str, float]:
    """Float accuracy and chip accuracy at threshold scale 1.0 on the same windows."""
    from aspen_deploy.sweep import evaluate_scale
    from aspen_deploy.train import evaluate

    fl = evaluate(run.net, data.test.x[windows], data.test.y[windows])
    be = get_backend(backend)
    be.load(cfg)
    ch = evaluate_scale(be, data.test.x[windows], data.test.y[windows], data.n_classes, 1.0)
    return {"float_accuracy": fl["accuracy"], "chip_accuracy": ch["accuracy"], "backend": backend,
            "windows": int(len(windows)), "float_hidden_spikes_per_window": fl["hidden_spikes_per_window"],
            "chip_hidden_spikes_per_window": ch["hidden_spikes_per_window"]}
