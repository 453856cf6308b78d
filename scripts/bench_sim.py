"""Throughput of the fast backend against the xylosim reference on a demo-shaped network.

Network: 15 inputs -> 3 x 48 hidden neurons (one 144 x 144 hidden matrix with feed-forward
blocks 0-47 -> 48-95 -> 96-143) -> 6 readout neurons fed by the last 48; random int8
weights, thresholds set so that ~5-20 % of hidden neurons spike per step. Inputs: random
integrate-and-fire-like event counts (mostly 0/1 per step, as the IMU IF's IAF encoder).

xylosim runs one window at a time, so it is timed on ``--ref-windows`` windows and its
per-window time is extrapolated to ``--windows``; the fast backend runs all ``--windows``
in one call (after a warm-up call that triggers / loads numba's compiled kernel). Both are
run on the first ``--ref-windows`` windows and their outputs compared element by element.

    PYTHONPATH=. python scripts/bench_sim.py [--windows 256] [--steps 512] [--ref-windows 8]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from aspen_deploy.backends.fast import FastBackend
from aspen_deploy.backends.xylosim import XyloSimBackend
from aspen_deploy.config import NeuronParams, XyloConfig

N_IN, WIDTH, N_LAYERS, N_OUT = 15, 48, 3, 6


def demo_config(rng: np.random.Generator) -> XyloConfig:
    """15-48-48-48-6 as one hidden matrix with feed-forward blocks (see module docstring)."""
    n_hid = WIDTH * N_LAYERS
    w_in = rng.integers(-60, 100, size=(N_IN, WIDTH))
    w_rec = np.zeros((n_hid, n_hid), np.int64)
    for k in range(N_LAYERS - 1):
        block = rng.integers(-90, 128, size=(WIDTH, WIDTH)) * (rng.random((WIDTH, WIDTH)) < 0.5)
        w_rec[k * WIDTH : (k + 1) * WIDTH, (k + 1) * WIDTH : (k + 2) * WIDTH] = block
    w_out = rng.integers(-128, 128, size=(WIDTH, N_OUT))

    def neurons(n: int, thr: int, dash_mem: int, dash_syn: int) -> NeuronParams:
        return NeuronParams(
            threshold=np.full(n, thr, np.int64),
            v_mem_decay=np.full(n, dash_mem, np.int64),
            i_syn_decay=np.full(n, dash_syn, np.int64),
            v_mem_bias=np.zeros(n, np.int64),
        )

    hidden = neurons(n_hid, 6000, 3, 2)  # tau_mem 40 ms, tau_syn 20 ms at dt = 5 ms
    hidden.alias_target = [None] * n_hid
    return XyloConfig(
        input_weights=w_in.astype(np.int64),
        input_shift=3,
        hidden_weights=w_rec,
        hidden_shift=2,
        hidden=hidden,
        readout_weights=w_out.astype(np.int64),
        readout_shift=2,
        readout=neurons(N_OUT, 30000, 3, 2),
        metadata={"what": "bench_sim demo network"},
    )


def iaf_like_events(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    """(n, t, 15) counts: each channel integrates a slowly varying positive drive and fires (<= 1 per step)."""
    freq = rng.uniform(0.2, 3.0, size=(n, 1, N_IN))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, N_IN))
    gain = rng.uniform(0.05, 0.5, size=(n, 1, N_IN))
    time_s = np.arange(t)[None, :, None] * 0.005
    drive = gain * (1 + np.sin(2 * np.pi * freq * time_s + phase)) / 2
    acc = np.cumsum(drive, axis=1)
    return np.diff(np.floor(acc), axis=1, prepend=0).astype(np.int64)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--windows", type=int, default=256, help="windows for the fast backend (default 256)")
    ap.add_argument("--steps", type=int, default=512, help="time steps per window (default 512)")
    ap.add_argument("--ref-windows", type=int, default=8, help="windows timed on xylosim and compared (default 8)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.windows < 1 or a.steps < 1 or a.ref_windows < 1:
        ap.error("--windows, --steps and --ref-windows must be positive")

    rng = np.random.default_rng(a.seed)
    cfg = demo_config(rng)
    x = iaf_like_events(rng, a.windows, a.steps)
    n_ref = min(a.ref_windows, a.windows)

    fast = FastBackend()
    fast.load(cfg)
    fast.run(x[:1, :8])  # compile or load the cached kernel outside the timing
    t0 = time.perf_counter()
    r_fast = fast.run(x)
    t_fast = time.perf_counter() - t0

    ref = XyloSimBackend()
    ref.load(cfg)
    t0 = time.perf_counter()
    r_ref = ref.run(x[:n_ref])
    t_ref = time.perf_counter() - t0

    fields = ("output_spikes", "readout_vmem", "hidden_spike_counts", "cycles_per_step", "prediction")
    agree = {f: bool(np.array_equal(getattr(r_ref, f), getattr(r_fast, f)[:n_ref])) for f in fields}
    activity = float((r_fast.hidden_spike_counts > 0).mean())
    active_frac = float(r_fast.cycles_per_step.size and (r_fast.hidden_spike_counts.sum() / (a.windows * a.steps * cfg.n_hidden)))
    fast_sps = a.windows / t_fast
    ref_sps = n_ref / t_ref
    print(f"network 15-{WIDTH}x{N_LAYERS}-{N_OUT}, {a.steps} steps/window, input events/step/channel {x.mean():.3f}")
    print(f"hidden spikes per neuron-step {active_frac:.3f}; neurons that ever spiked {activity:.2f}")
    print(f"xylosim: {n_ref} windows in {t_ref:.2f} s -> {ref_sps:.1f} windows/s (extrapolated to {a.windows}: {a.windows / ref_sps:.1f} s)")
    print(f"fast:    {a.windows} windows in {t_fast:.3f} s -> {fast_sps:.1f} windows/s")
    print(f"speedup: {fast_sps / ref_sps:.0f}x")
    print(f"agreement on {n_ref} windows: " + ", ".join(f"{f}={'equal' if ok else 'DIFFERENT'}" for f, ok in agree.items()))
    return {"fast_windows_per_s": fast_sps, "xylosim_windows_per_s": ref_sps, "speedup": fast_sps / ref_sps}


if __name__ == "__main__":
    main()
