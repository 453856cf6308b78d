"""The virtual device: the bit-exact fast simulator plus the power model. Its power is modelled, never measured.

Timing: windows run back to back in simulated real time, window i covering
``[i T dt, (i + 1) T dt)``. The monitor reports one sample per rail every ``1 / monitor_hz``
seconds, the mean over the steps of its period (samna's monitor also averages between
reports), at ``t_s = (k + 1) / monitor_hz``; a run shorter than one period still gets one
sample, over the whole run. For the steps of a period with mean cycles ``c``:

    R    = min(c / dt, clock * 1e6)                  busy cycles per second
    core = PowerModel.core_uw(clock, R) + noise      io = PowerModel.io_uw(clock) + noise

with ``noise ~ N(0, noise_uw^2)`` drawn from a generator seeded at construction.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Iterator

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import RunResult, check_events, predict_from_vmem
from aspen_deploy.backends.fast import FastBackend
from aspen_deploy.config import XyloConfig
from aspen_deploy.devices import DEFAULT_MONITOR_HZ, DeviceBase, PowerSamples, check_clock
from aspen_deploy.power.model import PowerModel


def modelled_samples(cycles: np.ndarray, dt: float, clock_mhz: float, model: PowerModel,
                     monitor_hz: float = DEFAULT_MONITOR_HZ, noise_uw: float = 0.0,
                     rng: np.random.Generator | None = None) -> PowerSamples:
    """Power samples for consecutive steps with the given cycles (any shape, read in C order = time order).

    Step s (starting at ``s dt``) falls in period ``floor(s dt hz)``; ``K = floor(duration hz)`` periods are
    reported (at least 1). Equations in the module docstring.
    """
    c = np.asarray(cycles, dtype=np.float64).reshape(-1)
    if c.size == 0:
        return PowerSamples.empty()
    duration = c.size * dt
    period = np.floor(np.arange(c.size) * dt * monitor_hz + 1e-9).astype(np.int64)  # period of each step's start
    k = int(np.floor(duration * monitor_hz + 1e-9))
    if k == 0:  # shorter than one monitor period: one sample over the whole run
        k, period, t = 1, np.zeros_like(period), np.array([duration])
    else:
        t = (np.arange(k) + 1) / monitor_hz
    keep = period < k  # a last, partial period is never reported (as on the board)
    n_steps = np.bincount(period[keep], minlength=k)
    mean_c = np.bincount(period[keep], weights=c[keep], minlength=k) / np.maximum(n_steps, 1)
    busy = np.minimum(mean_c / dt, clock_mhz * 1e6)
    core = np.asarray(model.core_uw(clock_mhz, busy), dtype=np.float64)
    io = np.full(k, float(model.io_uw(clock_mhz)))
    if noise_uw > 0:
        rng = rng or np.random.default_rng(0)
        core = core + rng.normal(0.0, noise_uw, k)
        io = io + rng.normal(0.0, noise_uw, k)
    return PowerSamples(t, core, io)


class VirtualDevice(DeviceBase):
    """FastBackend + `PowerModel`; power_source "modelled" (see the module docstring)."""

    name = "virtual"
    power_source = "modelled"

    def __init__(self, power_model: PowerModel | None = None, noise_uw: float = 0.0,
                 monitor_hz: float = DEFAULT_MONITOR_HZ, seed: int = 0) -> None:
        if not (noise_uw >= 0 and np.isfinite(noise_uw)):
            raise ValueError(f"--noise-uw must be a number >= 0 (uW of measurement noise), got {noise_uw}")
        self.power_model = power_model or PowerModel()
        self.noise_uw = float(noise_uw)
        self.monitor_hz = float(monitor_hz)
        self._rng = np.random.default_rng(seed)
        self._backend = FastBackend()
        self._config: XyloConfig | None = None
        self._clock = max(chip.CLOCKS_MHZ)
        self._samples = PowerSamples.empty()
        self._last: tuple[str, RunResult] | None = None  # (events digest, result) at the current configuration

    # ---- backend protocol ----
    def load(self, config: XyloConfig) -> None:
        self._backend.load(config)
        self._config = config
        self._last = None

    def set_threshold_scale(self, scale: float) -> None:
        self._backend.set_threshold_scale(scale)
        self._last = None

    def set_clock(self, mhz: float) -> float:
        self._clock = check_clock(mhz)
        return self._clock

    @property
    def clock_mhz(self) -> float:
        return self._clock

    @property
    def dt(self) -> float:
        return self._config.dt if self._config is not None else chip.DT_S

    @property
    def steps_per_s(self) -> float:
        return 1.0 / self.dt

    def run(self, events: np.ndarray, record_activity: bool = True) -> RunResult:
        """Simulate and model the power samples. The clock does not change what the core computes, so
        the same events at the same configuration (e.g. the power pass of a sweep after its activity
        pass) reuse the last simulation and only re-model the power."""
        x = np.ascontiguousarray(events)
        key = hashlib.blake2b(x.tobytes(), digest_size=16).hexdigest() + str((x.shape, x.dtype.str))
        if self._last is not None and self._last[0] == key:
            r = self._last[1]
        else:
            r = self._backend.run(x)
            self._last = (key, r)
        self._samples = self._model_samples(r.cycles_per_step)
        return r

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[RunResult]:
        """Runs the whole stream as one window (the simulator starts every window from reset), then
        yields per chunk. ``hidden_spike_counts`` per chunk are not available from the simulator and
        are NaN; spikes, membrane and cycles are exact."""
        if self._config is None:
            raise RuntimeError("load a configuration before streaming")
        parts = [check_events(c, self._config.n_inputs)[0] for c in chunks]
        if not parts:
            return
        r = self._backend.run(np.concatenate(parts)[None])
        self._samples = self._model_samples(r.cycles_per_step)
        t0 = 0
        for p in parts:
            sl = slice(t0, t0 + len(p))
            t0 += len(p)
            vmem = r.readout_vmem[:, sl]
            yield RunResult(output_spikes=r.output_spikes[:, sl], readout_vmem=vmem,
                            hidden_spike_counts=np.full((1, self._config.n_hidden), np.nan),
                            cycles_per_step=r.cycles_per_step[:, sl], prediction=predict_from_vmem(vmem))

    def power_samples(self) -> PowerSamples:
        return self._samples

    def _model_samples(self, cycles: np.ndarray) -> PowerSamples:
        return modelled_samples(cycles, self.dt, self._clock, self.power_model, self.monitor_hz, self.noise_uw,
                                self._rng)
