"""Power model: published figures reproduced by the defaults, clock choice, model files, calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aspen_deploy import chip
from aspen_deploy.backends.fast import FastBackend
from aspen_deploy.config import NeuronParams, XyloConfig
from aspen_deploy.power import (
    PUBLISHED_CLOCK_MHZ,
    PUBLISHED_CORE_ACTIVE_UW,
    PUBLISHED_CORE_IDLE_UW,
    PUBLISHED_DT_S,
    PUBLISHED_IO_UW,
    PowerModel,
    PowerModelError,
    fit_power_model,
)
from aspen_deploy.power.model import CONSTANTS
from aspen_deploy.power_sweep import append_power_row, calibrate


def tutorial_net(rng: np.random.Generator) -> XyloConfig:
    """A 15->4->2 network like the one of Rockpool's Xylo IMU power tutorial, at dt = 10 ms."""
    def neurons(n: int, thr: int) -> NeuronParams:
        return NeuronParams(threshold=np.full(n, thr), v_mem_decay=np.full(n, 2), i_syn_decay=np.full(n, 1),
                            v_mem_bias=np.zeros(n, int), alias_target=None)

    hidden = neurons(4, 200)
    hidden.alias_target = [None] * 4
    return XyloConfig(input_weights=rng.integers(10, 60, size=(15, 4)), input_shift=0,
                      hidden_weights=np.zeros((4, 4), int), hidden_shift=0, hidden=hidden,
                      readout_weights=rng.integers(20, 80, size=(4, 2)), readout_shift=0, readout=neurons(2, 300),
                      dt=PUBLISHED_DT_S)


def test_defaults_reproduce_the_published_hdk_figures():
    rng = np.random.default_rng(0)
    cfg = tutorial_net(rng)
    # IMU-like input: every channel carries a few events in most steps
    x = rng.integers(0, 4, size=(8, 300, 15)) * (rng.random((8, 300, 15)) < 0.7)
    be = FastBackend()
    be.load(cfg)
    r = be.run(x)
    assert r.hidden_spike_counts.sum() > 0  # the network is active, not idle
    m = PowerModel()
    est = m.estimate(r.cycles_per_step, dt=cfg.dt, clock=PUBLISHED_CLOCK_MHZ)
    assert est.realtime_ok and est.cycles_per_s > 0
    assert est.core_uw == pytest.approx(PUBLISHED_CORE_ACTIVE_UW, rel=0.05)
    assert m.idle_core_uw(PUBLISHED_CLOCK_MHZ) == pytest.approx(PUBLISHED_CORE_IDLE_UW, rel=0.05)
    assert est.io_uw == pytest.approx(PUBLISHED_IO_UW, rel=0.05)
    assert est.core_uw > m.idle_core_uw(PUBLISHED_CLOCK_MHZ)  # activity costs something
    # this small net keeps real time at the lowest clock, which "auto" picks
    assert m.estimate(r.cycles_per_step, dt=cfg.dt).clock_mhz == min(chip.CLOCKS_MHZ)
    # "core power scales roughly in proportion to clock"
    assert m.idle_core_uw(12.5) == pytest.approx(2 * m.idle_core_uw(6.25), rel=1e-6)


def test_clock_choice_uses_the_stated_margin_and_flags_overload():
    m = PowerModel()
    dt = chip.DT_S
    # required = 20000 * 1.2 / 5 ms = 4.8 MHz -> 6.25; 30000 -> 7.2 MHz -> 7.14 is too slow -> 8.33
    assert m.choose_clock(np.array([100.0, 20_000.0]), dt)[0] == 6.25
    f, req, ok = m.choose_clock(np.array([30_000.0]), dt)
    assert f == pytest.approx(100 / 12) and req == pytest.approx(7.2) and ok
    f, req, ok = m.choose_clock(np.array([300_000.0]), dt)  # 72 MHz: no clock keeps up
    assert f == max(chip.CLOCKS_MHZ) and not ok
    # a fixed clock below the requirement is reported, and busy cycles are capped at the clock rate
    est = m.estimate(np.array([300_000.0]), dt=dt, clock=6.25)
    assert not est.realtime_ok and est.cycles_per_s == pytest.approx(6.25e6)
    with pytest.raises(ValueError, match="auto"):
        m.estimate(np.array([1.0]), clock="fast")


def test_every_constant_carries_a_source_and_is_labelled_an_estimate(tmp_path):
    path = PowerModel().save(tmp_path / "m.json")
    d = json.loads(path.read_text())
    assert d["status"] == "estimate"
    for name in (*CONSTANTS, "margin"):
        c = d["constants"][name]
        assert isinstance(c["value"], float) and c["unit"]
        assert c["source"], name
    for name in CONSTANTS:
        assert d["constants"][name]["source"].startswith("estimate"), name
    assert PowerModel.load(path) == PowerModel()


@pytest.mark.parametrize("content, message", [
    (None, "not found"),
    ("{not json", "not valid JSON"),
    (json.dumps({"format": "other"}), "aspen-power-model/1"),
    (json.dumps({"format": "aspen-power-model/1", "constants": {}}), "constants.core_static_uw"),
])
def test_bad_model_files_give_one_line_errors(tmp_path, content, message):
    p = tmp_path / "model.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(PowerModelError, match=message) as e:
        PowerModel.load(p)
    assert "\n" not in str(e.value)


def test_negative_constants_are_refused():
    with pytest.raises(PowerModelError, match="core_uw_per_mhz"):
        PowerModel(core_uw_per_mhz=-1.0)
    with pytest.raises(PowerModelError, match="margin"):
        PowerModel(margin=0.9)


TRUE = PowerModel(core_static_uw=22.0, core_uw_per_mhz=17.5, core_pj_per_cycle=85.0, io_static_uw=280.0,
                  io_uw_per_mhz=3.2)


def synthetic_rows(model: PowerModel, rng: np.random.Generator, clocks=chip.CLOCKS_MHZ, noise_uw: float = 0.3):
    """Rows as a measured sweep would give them: varied clocks and cycle counts, noisy power."""
    rows = []
    for i, f in enumerate(np.repeat(clocks, 4)):
        cycles = float(rng.uniform(800, 6000))
        sps = 1 / chip.DT_S if i % 3 else float(rng.uniform(400, 2000))  # some accelerated-time runs
        busy = min(cycles * sps, f * 1e6)
        rows.append({"model": "m", "threshold_scale": 1.0 + 0.01 * i, "clock_mhz": float(f),
                     "cycles_per_step": cycles, "steps_per_s": sps,
                     "core_uw": model.core_uw(f, busy) + rng.normal(0, noise_uw),
                     "io_uw": model.io_uw(f) + rng.normal(0, noise_uw), "power_source": "measured"})
    return rows


def test_calibrate_recovers_known_constants_from_a_synthetic_sweep(tmp_path):
    rng = np.random.default_rng(3)
    csv_path = tmp_path / "measured.csv"
    for r in synthetic_rows(TRUE, rng):
        append_power_row(csv_path, r)
    model, report = calibrate(csv_path, tmp_path / "model.json")
    for name in CONSTANTS:
        assert getattr(model, name) == pytest.approx(getattr(TRUE, name), rel=0.05), name
    assert set(report.fitted) == set(CONSTANTS) and report.core_rms_uw < 1.0
    loaded = PowerModel.load(tmp_path / "model.json")
    assert loaded.status == "calibrated" and loaded.calibration["n_rows"] == report.n_rows == 32
    assert all(loaded.sources[k].startswith("calibrated") for k in CONSTANTS)
    assert loaded.core_uw(10.0, 1e6) == pytest.approx(TRUE.core_uw(10.0, 1e6), rel=0.02)


def test_one_clock_keeps_the_static_terms_of_the_prior():
    rng = np.random.default_rng(4)
    rows = synthetic_rows(TRUE, rng, clocks=(6.25,) * 4, noise_uw=0.0)
    prior = PowerModel(core_static_uw=TRUE.core_static_uw, io_uw_per_mhz=TRUE.io_uw_per_mhz)
    model, report = fit_power_model(rows, prior=prior)
    assert "core_static_uw" in report.kept and "io_uw_per_mhz" in report.kept
    assert any("one clock" in n for n in report.notes)
    # the separable constants still come out right once the kept ones are subtracted
    assert model.core_uw_per_mhz == pytest.approx(TRUE.core_uw_per_mhz, rel=0.05)
    assert model.core_pj_per_cycle == pytest.approx(TRUE.core_pj_per_cycle, rel=0.05)
    assert model.io_static_uw == pytest.approx(TRUE.io_static_uw, rel=0.01)


def test_calibrate_refuses_csvs_without_measured_rows(tmp_path):
    rng = np.random.default_rng(5)
    p = tmp_path / "modelled.csv"
    for r in synthetic_rows(TRUE, rng):
        append_power_row(p, {**r, "power_source": "modelled"})
    with pytest.raises(PowerModelError, match="no measured rows"):
        calibrate(p, tmp_path / "m.json")
    model, _ = calibrate(p, tmp_path / "m.json", include_modelled=True)
    assert model.core_uw_per_mhz == pytest.approx(TRUE.core_uw_per_mhz, rel=0.05)
