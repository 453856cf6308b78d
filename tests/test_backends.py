"""Backend protocol behaviour, the registry, Rockpool access without samna, and the cycles model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers_random_config import random_config, random_events

from aspen_deploy import chip, rockpool_compat
from aspen_deploy.backends import BACKENDS, Backend, UnknownBackendError, get_backend
from aspen_deploy.backends.cycles import CycleShape, cycles_per_step, lowest_clock, min_clock_mhz
from aspen_deploy.config import NeuronParams, XyloConfig

REPO = Path(__file__).resolve().parents[1]


def small_net(seed: int = 0, n_in: int = 4, n_hid: int = 12, n_out: int = 3) -> XyloConfig:
    """A plain feed-forward-ish network whose hidden neurons spike a fair amount at scale 1."""
    rng = np.random.default_rng(seed)

    def pop(n: int, thr: int) -> NeuronParams:
        return NeuronParams(
            threshold=np.full(n, thr, np.int64),
            v_mem_decay=np.full(n, 3, np.int64),
            i_syn_decay=np.full(n, 2, np.int64),
            v_mem_bias=np.zeros(n, np.int64),
            alias_target=None,
        )

    hidden = pop(n_hid, 400)
    hidden.alias_target = [None] * n_hid
    return XyloConfig(
        input_weights=rng.integers(0, 100, size=(n_in, n_hid)),
        input_shift=2,
        hidden_weights=np.triu(rng.integers(-40, 80, size=(n_hid, n_hid)), 1),
        hidden_shift=1,
        hidden=hidden,
        readout_weights=rng.integers(-60, 100, size=(n_hid, n_out)),
        readout_shift=1,
        readout=pop(n_out, 2000),
    )


def events(seed: int, n: int, t: int, n_in: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, t, n_in)) < 0.3) * rng.integers(1, 4, size=(n, t, n_in))


@pytest.fixture(params=BACKENDS)
def backend(request) -> Backend:
    return get_backend(request.param)


# ---- registry -----------------------------------------------------------------------------
def test_registry_gives_fresh_backends_of_each_name():
    assert set(BACKENDS) == {"fast", "xylosim"}
    for name in BACKENDS:
        a, b = get_backend(name), get_backend(name)
        assert a.name == name and a is not b
        assert isinstance(a, Backend)


def test_unknown_backend_is_a_value_error_listing_the_choices():
    with pytest.raises(UnknownBackendError) as e:
        get_backend("hdk-typo")
    assert isinstance(e.value, ValueError)
    assert "hdk-typo" in str(e.value) and "fast" in str(e.value) and "xylosim" in str(e.value)


# ---- protocol behaviour (both backends) ----------------------------------------------------
def test_result_shapes_and_prediction(backend: Backend):
    cfg = small_net()
    backend.load(cfg)
    r = backend.run(events(1, 3, 40))
    assert r.output_spikes.shape == r.readout_vmem.shape == (3, 40, 3)
    assert r.hidden_spike_counts.shape == (3, 12)
    assert r.cycles_per_step.shape == (3, 40)
    t0 = int(40 * 0.25)
    assert np.array_equal(r.prediction, r.readout_vmem[:, t0:].mean(axis=1).argmax(axis=1))
    assert r.hidden_spike_counts.sum() > 0


def test_each_window_starts_from_reset_state(backend: Backend):
    backend.load(small_net())
    x = events(2, 3, 30)
    together = backend.run(x)
    alone = backend.run(x[2:3])
    again = backend.run(x[2])  # a single (T, Nin) window
    for f in ("output_spikes", "readout_vmem", "hidden_spike_counts", "cycles_per_step"):
        assert np.array_equal(getattr(together, f)[2:3], getattr(alone, f)), f
        assert np.array_equal(getattr(alone, f), getattr(again, f)), f


def test_counts_above_15_act_as_15(backend: Backend):
    backend.load(small_net())
    x = events(3, 2, 30) * 5  # up to 15
    over = np.where(x == 15, 99, x)
    assert (over > 15).any()
    a, b = backend.run(x), backend.run(over)
    assert np.array_equal(a.readout_vmem, b.readout_vmem)
    assert np.array_equal(a.hidden_spike_counts, b.hidden_spike_counts)


def test_threshold_scale_trades_spikes_monotonically(backend: Backend):
    backend.load(small_net())
    x = events(4, 4, 60)
    totals = []
    for scale in (0.5, 1.0, 1.5, 2.5, 4.0):
        backend.set_threshold_scale(scale)
        totals.append(int(backend.run(x).hidden_spike_counts.sum()))
    assert all(a >= b for a, b in zip(totals[:-1], totals[1:], strict=True)), totals
    assert totals[0] > totals[-1]


def test_threshold_scale_equals_loading_the_scaled_config(backend: Backend):
    cfg = small_net(seed=5)
    x = events(5, 2, 40)
    backend.load(cfg)
    backend.set_threshold_scale(1.7)
    in_place = backend.run(x)
    fresh = get_backend(backend.name)
    fresh.load(cfg.with_threshold_scale(1.7))
    reloaded = fresh.run(x)
    assert np.array_equal(in_place.readout_vmem, reloaded.readout_vmem)
    assert np.array_equal(in_place.hidden_spike_counts, reloaded.hidden_spike_counts)
    backend.set_threshold_scale(1.0)  # back to the original, not 1.7 * 1.0
    fresh.load(cfg)
    assert np.array_equal(backend.run(x).hidden_spike_counts, fresh.run(x).hidden_spike_counts)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((2, 10, 5), np.int64), "channels"),
        (-np.ones((1, 10, 4), np.int64), ">= 0"),
        (np.full((1, 10, 4), 0.5), "whole numbers"),
        (np.zeros((10,), np.int64), "shape"),
        (np.zeros((0, 10, 4), np.int64), "empty"),
    ],
)
def test_bad_input_is_a_clear_value_error(backend: Backend, bad: np.ndarray, match: str):
    backend.load(small_net())
    with pytest.raises(ValueError, match=match):
        backend.run(bad)


def test_bad_threshold_scale_and_run_before_load(backend: Backend):
    with pytest.raises(RuntimeError, match="load"):
        backend.run(events(0, 1, 5))
    backend.load(small_net())
    with pytest.raises(ValueError, match="positive"):
        backend.set_threshold_scale(0.0)


def test_fast_refuses_values_the_registers_cannot_hold():
    cfg = small_net()
    cfg.hidden_weights[0, 1] = 300
    fast = get_backend("fast")
    with pytest.raises(ValueError, match=r"hidden.weights must lie in -128..127"):
        fast.load(cfg)


# ---- Rockpool without samna ----------------------------------------------------------------
def test_importing_rockpool_compat_loads_neither_rockpool_devices_nor_samna():
    code = (
        "import sys, aspen_deploy.rockpool_compat, aspen_deploy.backends, aspen_deploy.backends.fast;"
        "bad = [m for m in sys.modules if m.startswith(('samna', 'rockpool'))];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": ""})


def test_xylo_imu_module_imports_without_samna():
    imu = rockpool_compat.import_xylo_imu()
    assert imu is rockpool_compat.import_xylo_imu()
    assert imu.__name__ == "rockpool.devices.xylo.syns63300"
    assert hasattr(imu, "XyloSim") and callable(rockpool_compat.xylo_mapper())
    assert rockpool_compat.imuif_sim_class().__name__ == "IMUIFSim"
    assert "samna" not in sys.modules


def test_xylo_config_json_through_rockpool_from_config_matches_fast(tmp_path):
    cfg = random_config(np.random.default_rng(7), regime="busy")
    cfg.hidden.alias_target = [None] * cfg.n_hidden  # from_config drops alias 0, see below
    path = cfg.save(tmp_path / "xylo_config.json")
    loaded = XyloConfig.load(path)
    x = np.minimum(random_events(np.random.default_rng(8), cfg.n_inputs, 1, 30)[0], 15)
    sim = rockpool_compat.import_xylo_imu().XyloSim.from_config(
        rockpool_compat.config_namespace(loaded), output_mode="Vmem"
    )
    vmem, _, rec = sim.evolve(x, record=True)
    fast = get_backend("fast")
    fast.load(cfg)
    r = fast.run(x)
    assert np.array_equal(np.asarray(vmem), r.readout_vmem[0])
    assert np.array_equal(np.asarray(rec["Spikes"]).sum(axis=0), r.hidden_spike_counts[0])


def test_alias_to_neuron_0_is_kept_although_rockpool_from_config_drops_it():
    # neuron 1 gets the input and aliases to neuron 0; the readout listens to neuron 0 only
    def pop(n, thr, alias=None):
        return NeuronParams(np.full(n, thr), np.zeros(n, np.int64), np.full(n, 15), np.zeros(n, np.int64), alias)

    cfg = XyloConfig(
        input_weights=np.array([[0, 100]]),
        input_shift=0,
        hidden_weights=np.zeros((2, 2), np.int64),
        hidden_shift=0,
        hidden=pop(2, 99, alias=[None, 0]),
        readout_weights=np.array([[10], [0]]),
        readout_shift=0,
        readout=pop(1, 30000),
    )
    x = np.zeros((4, 1), np.int64)
    x[0] = 1
    ours = rockpool_compat.xylosim_from_config(cfg, "Vmem").evolve(x)[0]
    rockpools = rockpool_compat.rockpool_from_config_unpatched(cfg, "Vmem").evolve(x)[0]
    assert ours[1, 0] == 9 and rockpools[1, 0] == 0
    fast = get_backend("fast")
    fast.load(cfg)
    assert np.array_equal(fast.run(x).readout_vmem[0], np.asarray(ours))


# ---- cycles model ----------------------------------------------------------------------------
def test_cycles_equal_rockpools_cycles_model_step_by_step():
    model = rockpool_compat.rockpool_cycles_module().cycles_model
    assert "samna" not in sys.modules
    rng = np.random.default_rng(11)
    checked = 0
    for i in range(40):
        cfg = random_config(rng)
        if cfg.n_inputs < 2 or cfg.n_hidden < 2:  # Rockpool reads a size-1 raster as a probability
            continue
        x = random_events(rng, cfg.n_inputs, 2, 4)
        h = (rng.random((2, 4, cfg.n_hidden)) < rng.random()) * rng.integers(1, 32, size=(2, 4, cfg.n_hidden))
        ours = cycles_per_step(cfg, x, h)
        ns = rockpool_compat.config_namespace(cfg)
        ref = np.array([[model(ns, x[n, t], h[n, t]) for t in range(4)] for n in range(2)])
        assert np.array_equal(ours, ref), f"config {i}"
        checked += 1
    assert checked >= 20


def test_backends_report_cycles_from_their_own_activity(backend: Backend):
    cfg = small_net()
    backend.load(cfg)
    x = events(6, 2, 30)
    r = backend.run(x)
    idle = cycles_per_step(cfg, np.zeros_like(x), np.zeros((2, 30, cfg.n_hidden)))
    assert (r.cycles_per_step >= idle).all() and (r.cycles_per_step > idle).any()
    shape = CycleShape.of(cfg)
    assert shape.n_ien_used == cfg.n_hidden and shape.alias_rate == 0.0


def test_min_clock_picks_the_lowest_legal_clock():
    dt = chip.DT_S
    low = min_clock_mhz(np.array([1000.0, 3000.0]), dt)
    assert low.clock_mhz == min(chip.CLOCKS_MHZ) and low.required_mhz == pytest.approx(3000 * 1.2 / dt / 1e6)
    need_9 = 9e6 * dt / 1.2  # cycles that need exactly 9 MHz
    assert min_clock_mhz(np.array([need_9]), dt).clock_mhz == pytest.approx(10.0)
    too_many = min_clock_mhz(np.array([60e6 * dt]), dt)
    assert too_many.clock_mhz is None and too_many.required_mhz > max(chip.CLOCKS_MHZ)
    with pytest.raises(ValueError, match="margin"):
        min_clock_mhz(np.array([1.0]), dt, margin=0.2)
    with pytest.raises(ValueError, match="dt"):
        min_clock_mhz(np.array([1.0]), 0.0)


@pytest.mark.parametrize("clock", chip.CLOCKS_MHZ)
def test_a_requirement_exactly_on_a_clock_gets_that_clock(clock: float):
    """Float rounding must not push an exact fit to the next clock (10 MHz computes as
    10.000000000000002), and the controller picks by the same rule."""
    choice = min_clock_mhz(np.array([clock * 1e6 * chip.DT_S / 1.2]), chip.DT_S)
    assert choice.clock_mhz == clock
    assert lowest_clock(choice.required_mhz) == clock


def test_cycles_per_step_checks_shapes():
    cfg = small_net()
    with pytest.raises(ValueError, match="input channels"):
        cycles_per_step(cfg, np.zeros((1, 5, 3)), np.zeros((1, 5, 12)))
    with pytest.raises(ValueError, match="agree"):
        cycles_per_step(cfg, np.zeros((1, 5, 4)), np.zeros((1, 6, 12)))


def test_cycles_of_many_steps_by_table_equal_the_formula_step_by_step():
    """Large batches look the cycles up in a table of every (inputs, hidden) pair: the same floats."""
    from aspen_deploy.backends.cycles import _cycles_formula, cycles_from_activity

    rng = np.random.default_rng(3)
    cfg = random_config(rng, max_hidden=40)
    shape = CycleShape.of(cfg)
    ia = rng.integers(0, cfg.n_inputs + 1, size=(50, 300))
    ha = rng.integers(0, cfg.n_hidden + 1, size=(50, 300))
    assert ia.size > 4 * (cfg.n_inputs + 1) * (cfg.n_hidden + 1)  # the table path is taken
    assert np.array_equal(cycles_from_activity(shape, ia, ha), _cycles_formula(shape, ia, ha))
    with pytest.raises(ValueError, match="0.."):
        cycles_from_activity(shape, ia, ha + cfg.n_hidden + 1)
