"""The real flows on an attached Xylo IMU HDK: apply, infer and compare with the bit-exact simulator,
threshold change, clock change, power read, stream, power sweep and calibration.

Skipped with one line when samna or a board is missing (see conftest.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from aspen_deploy import chip
from aspen_deploy.backends.fast import FastBackend
from aspen_deploy.devices import ClockError
from aspen_deploy.power_sweep import CSV_NAME, calibrate, read_power_rows, sweep_power


def fast_run(cfg, x, scale=1.0):
    be = FastBackend()
    be.load(cfg)
    be.set_threshold_scale(scale)
    return be.run(x)


def test_apply_infer_matches_the_bit_exact_simulator(hdk, make_config, make_events):
    cfg = make_config(0)
    x = make_events(1, 4, 200)
    hdk.load(cfg)
    r, ref = hdk.run(x), fast_run(cfg, x)
    np.testing.assert_array_equal(r.output_spikes, ref.output_spikes)
    np.testing.assert_array_equal(r.readout_vmem, ref.readout_vmem)
    np.testing.assert_array_equal(r.hidden_spike_counts, ref.hidden_spike_counts)
    np.testing.assert_allclose(r.cycles_per_step, ref.cycles_per_step)
    assert ref.hidden_spike_counts.sum() > 0  # the comparison is not between two silent networks


def test_threshold_change_matches_the_simulator(hdk, make_config, make_events):
    cfg = make_config(2)
    x = make_events(3, 3, 150)
    hdk.load(cfg)
    low = hdk.run(x)
    hdk.set_threshold_scale(1.8)
    high = hdk.run(x)
    ref = fast_run(cfg, x, 1.8)
    np.testing.assert_array_equal(high.readout_vmem, ref.readout_vmem)
    np.testing.assert_array_equal(high.hidden_spike_counts, ref.hidden_spike_counts)
    assert high.hidden_spike_counts.sum() < low.hidden_spike_counts.sum()


def test_clock_change_keeps_results_and_refuses_illegal_clocks(hdk, make_config, make_events):
    cfg = make_config(4)
    x = make_events(5, 2, 100)
    hdk.load(cfg)
    results = []
    for f in (50.0, 12.5, 6.25):
        assert hdk.set_clock(f) == f
        results.append(hdk.run(x).readout_vmem)
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    with pytest.raises(ClockError):
        hdk.set_clock(20)
    hdk.set_clock(max(chip.CLOCKS_MHZ))


def _mean_core(hdk, x, f):
    hdk.set_clock(f)
    for _ in range(5):  # until the monitor has reported a few samples
        hdk.run(x, record_activity=False)
        s = hdk.power_samples()
        if len(s) >= 3:
            return s
    pytest.fail(f"the power monitor reported {len(s)} samples over {len(x)} windows at {f} MHz")


def test_power_read_reports_both_rails_and_clock_moves_core_power(hdk, make_config, make_events):
    cfg = make_config(6)
    x = make_events(7, 16, 200)
    hdk.load(cfg)
    slow, fast = _mean_core(hdk, x, 6.25), _mean_core(hdk, x, 50.0)
    for s in (slow, fast):
        assert np.all((s.core_uw > 1) & (s.core_uw < 20_000)) and np.all((s.io_uw > 1) & (s.io_uw < 20_000))
        assert np.all(np.diff(s.t_s) > 0)
    assert fast.core_uw.mean() > slow.core_uw.mean()  # the premise of the power model
    assert hdk.steps_per_s > 0


def test_stream_keeps_state_between_chunks(hdk, make_config, make_events):
    cfg = make_config(8)
    x = make_events(9, 1, 120)[0]
    hdk.load(cfg)
    parts = list(hdk.stream([x[:50], x[50:]]))
    ref = fast_run(cfg, x[None])
    np.testing.assert_array_equal(np.concatenate([p.readout_vmem for p in parts], axis=1), ref.readout_vmem)


def test_power_sweep_and_calibration(hdk, tmp_path, make_config, make_events):
    cfg = make_config(10)
    x = make_events(11, 16, 200)
    y = np.arange(16) % cfg.n_outputs
    for clock in ("auto", 25.0):
        rows = sweep_power(cfg, hdk, x, y, "hw", tmp_path, scales=(0.8, 1.6), clock=clock)
        assert len(rows) == 2
        for r in rows:
            assert r["power_source"] == "measured" and r["device"] == "hdk" and r["power_samples"] > 0
            assert r["core_uw"] > 0 and r["io_uw"] > 0 and r["clock_mhz"] in chip.CLOCKS_MHZ
    assert len(read_power_rows(tmp_path / CSV_NAME)) == 4
    model, report = calibrate(tmp_path / CSV_NAME, tmp_path / "model.json")
    assert model.status == "calibrated" and report.n_rows == 4
