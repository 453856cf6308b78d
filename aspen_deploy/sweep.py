"""Threshold sweep: evaluate a configuration at many hidden-threshold scales through a backend.

Rows are appended to ``sweep.csv`` as each scale finishes; a re-run skips scales already
present, so an interrupted sweep resumes. ``sweep.json`` and ``sweep.png`` are written at the end.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

import numpy as np

from aspen_deploy.backends.base import Backend
from aspen_deploy.backends.cycles import min_clock_mhz
from aspen_deploy.config import XyloConfig
from aspen_deploy.io import atomic_savefig, atomic_write_json

COLUMNS = ["model", "threshold_scale", "accuracy", "macro_f1", "hidden_spikes_per_window",
           "output_spikes_per_window", "cycles_per_step", "max_cycles_per_step", "required_clock_mhz",
           "min_clock_mhz", "backend", "windows"]
DEFAULT_SCALES = tuple(np.round(np.arange(0.6, 2.4 + 1e-9, 0.1), 2))


def parse_scales(spec: str) -> tuple[float, ...]:
    """'A:B:STEP' (inclusive) or 'S1,S2,...' -> sorted positive scales; ValueError otherwise."""
    try:
        if ":" in spec:
            a, b, step = (float(v) for v in spec.split(":"))
            if step <= 0 or b < a:
                raise ValueError
            vals = np.round(np.arange(a, b + step / 2, step), 4)
        else:
            vals = np.array([float(v) for v in spec.split(",")])
    except ValueError:
        raise ValueError(f"bad --scales '{spec}': use A:B:STEP (e.g. 0.6:2.4:0.1) or a list like 0.8,1.0,1.5") from None
    if len(vals) == 0 or np.any(~np.isfinite(vals)) or np.any(vals <= 0):
        raise ValueError(f"bad --scales '{spec}': scales must be positive numbers")
    return tuple(float(v) for v in sorted(set(vals.tolist())))


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean over classes of F1 = 2 TP / (2 TP + FP + FN); classes absent from both count as 0."""
    f1 = []
    for c in range(n_classes):
        tp = np.sum((pred == c) & (y == c))
        denom = 2 * tp + np.sum((pred == c) & (y != c)) + np.sum((pred != c) & (y == c))
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def stratified_subset(y: np.ndarray, n: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most n windows keeping class proportions (all of them if n is None)."""
    if n is None or n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    idx = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = max(1, int(round(n * len(members) / len(y))))
        idx.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(idx))


def read_rows(path: str | Path, columns: Sequence[str] | None = COLUMNS, text: Collection[str] = ("model", "backend"),
              bools: Collection[str] = (), required: Sequence[str] = (), error: type[Exception] = ValueError,
              kind: str = "sweep") -> list[dict[str, Any]]:
    """Rows of a results CSV (``sweep.csv``, ``power_sweep.csv``); [] if absent or empty.

    Values of ``columns`` (every column when None) become floats unless in ``text`` (kept as
    strings) or ``bools`` (true/1/yes -> True); empty values stay "". ``error`` is raised for a
    file lacking a ``required`` column (not a ``kind`` CSV) or holding a value that is not a number.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return []
    with open(p, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames or []
    missing = [c for c in required if c not in header]
    if missing:
        raise error(f"{p} is not a {kind.replace(' ', '-')} CSV (no column(s) {', '.join(missing)})")
    for r in rows:
        for k in (list(r) if columns is None else columns):
            if k is None or k in text:
                continue
            v = r.get(k)
            if k in bools:
                r[k] = str(v).strip().lower() in ("true", "1", "yes")
            elif v not in (None, ""):
                try:
                    r[k] = float(v)
                except ValueError:
                    raise error(f"{p}: column {k} holds {v!r}, not a number") from None
    return rows


def evaluate_scale(backend: Backend, events: np.ndarray, y: np.ndarray, n_classes: int, scale: float,
                   batch: int = 256) -> dict[str, float]:
    """Accuracy, macro-F1, spikes and cycles for one threshold scale (backend already loaded)."""
    backend.set_threshold_scale(scale)
    preds, hid, out, cyc = [], 0.0, 0.0, []
    for i in range(0, len(events), batch):
        r = backend.run(events[i:i + batch])
        preds.append(r.prediction)
        hid += float(r.hidden_spike_counts.sum())
        out += float(r.output_spikes.sum())
        cyc.append(r.cycles_per_step)
    pred = np.concatenate(preds)
    cycles = np.concatenate(cyc)
    n = len(events)
    clock = min_clock_mhz(cycles)  # real time must hold for the busiest step, not the average one
    return {"threshold_scale": scale, "accuracy": float(np.mean(pred == y)), "macro_f1": macro_f1(y, pred, n_classes),
            "hidden_spikes_per_window": hid / n, "output_spikes_per_window": out / n,
            "cycles_per_step": float(cycles.mean()), "max_cycles_per_step": float(cycles.max()),
            "required_clock_mhz": clock.required_mhz,
            # NaN when no chip clock keeps up with the busiest step
            "min_clock_mhz": float("nan") if clock.clock_mhz is None else float(clock.clock_mhz)}


def run_sweep(config: XyloConfig, backend: Backend, events: np.ndarray, y: np.ndarray, n_classes: int,
              model: str, out_dir: Path, scales: Sequence[float] = DEFAULT_SCALES,
              progress: Callable[..., Any] | None = None) -> list[dict[str, Any]]:
    """Sweep ``scales``, appending rows to ``out_dir/sweep.csv``; resumes, then writes json + png."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "sweep.csv"
    rows = read_rows(csv_path)
    done = {(r["model"], round(float(r["threshold_scale"]), 6), r.get("backend")) for r in rows}
    backend.load(config)
    todo = [s for s in scales if (model, round(s, 6), backend.name) not in done]
    bar = progress(total=len(todo), desc=f"sweep {model} ({backend.name}, {len(events)} windows)") if progress else None
    for s in todo:
        row = {"model": model, **evaluate_scale(backend, events, y, n_classes, s), "backend": backend.name,
               "windows": len(events)}
        append_row(csv_path, row)
        rows.append(row)
        if bar:
            bar.update(1)
    if bar:
        bar.close()
    mine = sorted([r for r in rows if r["model"] == model and r.get("backend") == backend.name],
                  key=lambda r: float(r["threshold_scale"]))
    atomic_write_json(out_dir / "sweep.json", {"model": model, "backend": backend.name, "rows": mine})
    plot_sweeps({model: mine}, out_dir / "sweep.png")
    return mine


def append_row(path: Path, row: Mapping[str, Any], columns: Sequence[str] = COLUMNS, check_header: bool = False,
               error: type[Exception] = ValueError, kind: str = "sweep") -> None:
    """Append one row of ``columns`` (header first on a new file), flushed so an interruption keeps it.

    With ``check_header``, a file written with other columns is refused (``error``, naming the ``kind``
    of sweep to start anew) rather than mixed.
    """
    new = not path.exists() or path.stat().st_size == 0
    if check_header and not new:
        with open(path, newline="") as f:
            header = next(csv.reader(f), [])
        if header != list(columns):
            raise error(f"{path} was written with other columns; move it aside to start a new {kind}")
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        if new:
            w.writeheader()
        w.writerow({k: row.get(k, "") for k in columns})
        f.flush()


def plot_sweeps(curves: dict[str, Iterable[dict[str, Any]]], path: Path) -> Path:
    """Accuracy vs threshold, hidden spikes vs threshold, accuracy vs spikes; one line per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    for name, rows in curves.items():
        rows = sorted(rows, key=lambda r: float(r["threshold_scale"]))
        s = [float(r["threshold_scale"]) for r in rows]
        acc = [float(r["accuracy"]) for r in rows]
        spk = [float(r["hidden_spikes_per_window"]) for r in rows]
        ax[0].plot(s, acc, "o-", label=name)
        ax[1].plot(s, spk, "o-", label=name)
        ax[2].plot(spk, acc, "o-", label=name)
    ax[0].set(xlabel="threshold scale", ylabel="accuracy", title="accuracy vs threshold")
    ax[1].set(xlabel="threshold scale", ylabel="hidden spikes / window", title="activity vs threshold")
    ax[2].set(xlabel="hidden spikes / window", ylabel="accuracy", title="accuracy vs activity")
    for a in ax:
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    atomic_savefig(fig, path)
    plt.close(fig)
    return path
