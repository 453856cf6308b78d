"""Devices without hardware: the virtual device's flows, the power sweep, and the samna HDK code
against a fake ``samna`` (sys.modules injection) that mimics the documented API and simulates
the chip with the fast backend."""

from __future__ import annotations

import csv
import json
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from aspen_deploy import chip
from aspen_deploy.backends.fast import FastBackend
from aspen_deploy.config import NeuronParams, XyloConfig
from aspen_deploy.devices import ClockError, DeviceArgumentError, DeviceError, PowerSamples, open_device
from aspen_deploy.devices import samna_hdk
from aspen_deploy.power import PowerModel
from aspen_deploy.power_sweep import (
    CSV_NAME,
    POWER_COLUMNS,
    read_power_rows,
    run_power_sweep,
    sweep_power,
)
from helpers_random_config import random_config


def small_config(seed: int = 0, n_in: int = 15, n_hid: int = 24, n_out: int = 4, imu_if: bool = False,
                 bias: bool = True) -> XyloConfig:
    """A layered net that spikes moderately (thresholds well above zero), with one alias."""
    rng = np.random.default_rng(seed)

    def neurons(n: int, thr: int) -> NeuronParams:
        return NeuronParams(threshold=rng.integers(thr // 2, thr * 2, n), v_mem_decay=rng.integers(1, 5, n),
                            i_syn_decay=rng.integers(1, 4, n), v_mem_bias=rng.integers(-5, 6, n), alias_target=None)

    hidden = neurons(n_hid, 400)
    hidden.alias_target = [None] * n_hid
    hidden.alias_target[3] = 7
    w_rec = np.triu(rng.integers(-40, 60, (n_hid, n_hid)) * (rng.random((n_hid, n_hid)) < 0.3), 1)
    cfg = XyloConfig(input_weights=rng.integers(-20, 80, (n_in, min(16, n_hid))), input_shift=1, hidden_weights=w_rec,
                     hidden_shift=0, hidden=hidden, readout_weights=rng.integers(-30, 70, (min(12, n_hid), n_out)),
                     readout_shift=1, readout=neurons(n_out, 600), bias_enable=bias)
    if imu_if:
        from data_prep.frontend import EncoderSettings, FrontEndSettings

        cfg.imu_if = FrontEndSettings(encoder=EncoderSettings.iaf(list(range(900, 915)))).to_dict()
    return cfg


def events(seed: int, n: int, t: int, n_in: int = 15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 6, (n, t, n_in)) * (rng.random((n, t, n_in)) < 0.3)).astype(np.int64)


def fast_run(cfg: XyloConfig, x: np.ndarray, scale: float = 1.0):
    be = FastBackend()
    be.load(cfg)
    be.set_threshold_scale(scale)
    return be.run(x)


def assert_same_result(a, b) -> None:
    np.testing.assert_array_equal(a.output_spikes, b.output_spikes)
    np.testing.assert_array_equal(a.readout_vmem, b.readout_vmem)
    np.testing.assert_array_equal(a.hidden_spike_counts, b.hidden_spike_counts)
    np.testing.assert_allclose(a.cycles_per_step, b.cycles_per_step)
    np.testing.assert_array_equal(a.prediction, b.prediction)


# =============================================================================== virtual device
def test_virtual_device_infers_exactly_like_the_fast_backend_and_changes_threshold():
    cfg = small_config(1)
    x = events(2, 6, 120)
    with open_device("virtual") as dev:
        assert dev.power_source == "modelled"
        dev.load(cfg)
        assert_same_result(dev.run(x), fast_run(cfg, x))
        dev.set_threshold_scale(2.0)
        high = dev.run(x)
        assert_same_result(high, fast_run(cfg, x, 2.0))
        assert high.hidden_spike_counts.sum() < fast_run(cfg, x).hidden_spike_counts.sum()


def test_virtual_clock_must_be_a_chip_clock_and_moves_modelled_power():
    cfg = small_config(1)
    x = events(3, 4, 200)
    with open_device("virtual") as dev:
        dev.load(cfg)
        with pytest.raises(ClockError, match="not a Xylo IMU core clock.*50, 25, 16.67") as e:
            dev.set_clock(20)
        assert "\n" not in str(e.value)
        assert dev.set_clock(16.67) == pytest.approx(100 / 6)  # rounded spelling accepted, exact clock set
        core = {}
        for f in (6.25, 12.5):
            dev.set_clock(f)
            dev.run(x)
            core[f] = dev.power_samples().core_uw.mean()
    m = PowerModel()
    assert core[12.5] - core[6.25] == pytest.approx(m.core_uw_per_mhz * 6.25, rel=1e-6)


def test_virtual_power_samples_follow_the_monitor_rate_activity_and_noise():
    cfg = small_config(4)
    x = events(5, 7, 150)  # 7 x 150 x 5 ms = 5.25 s -> 26 samples at 5 Hz
    m = PowerModel()
    with open_device("virtual", noise_uw=2.0, seed=7) as dev:
        dev.load(cfg)
        r = dev.run(x)
        s = dev.power_samples()
    assert len(s) == 26
    np.testing.assert_allclose(s.t_s, (np.arange(26) + 1) / 5.0)
    # noise-free mean over each 0.2 s period (40 steps) of the modelled core power
    c = r.cycles_per_step.reshape(-1)[: 26 * 40].reshape(26, 40).mean(axis=1)
    expected = m.core_uw(max(chip.CLOCKS_MHZ), c / chip.DT_S)
    resid = s.core_uw - expected
    assert abs(resid.mean()) < 1.5 and 1.0 < resid.std() < 3.2
    assert np.all(np.abs(s.io_uw - m.io_uw(max(chip.CLOCKS_MHZ))) < 10)
    # same seed, same samples; no noise, exact model
    with open_device("virtual", noise_uw=2.0, seed=7) as dev:
        dev.load(cfg)
        dev.run(x)
        np.testing.assert_array_equal(dev.power_samples().core_uw, s.core_uw)
    with open_device("virtual") as dev:
        dev.load(cfg)
        dev.run(x[:1, :20])  # 0.1 s: shorter than one monitor period -> one sample over the run
        one = dev.power_samples()
        assert len(one) == 1 and one.t_s[0] == pytest.approx(0.1)


def test_virtual_stream_keeps_state_across_chunks():
    cfg = small_config(6)
    x = events(7, 1, 90)[0]
    whole = fast_run(cfg, x[None])
    with open_device("virtual") as dev:
        dev.load(cfg)
        parts = list(dev.stream([x[:30], x[30:55], x[55:]]))
    np.testing.assert_array_equal(np.concatenate([p.readout_vmem for p in parts], axis=1), whole.readout_vmem)
    np.testing.assert_array_equal(np.concatenate([p.output_spikes for p in parts], axis=1), whole.output_spikes)
    np.testing.assert_allclose(np.concatenate([p.cycles_per_step for p in parts], axis=1), whole.cycles_per_step)


def test_open_device_rejects_unknown_names_and_misplaced_options():
    with pytest.raises(DeviceArgumentError, match="virtual, hdk"):
        open_device("fpga")
    with pytest.raises(DeviceArgumentError, match="--board"):
        open_device("virtual", board="0")
    with pytest.raises(ValueError, match="noise"):
        open_device("virtual", noise_uw=-1)


# =============================================================================== power sweep
class Interrupt(Exception):
    pass


def test_power_sweep_appends_rows_and_resumes_after_an_interruption(tmp_path):
    cfg = small_config(8)
    x = events(9, 12, 200)
    y = np.random.default_rng(0).integers(0, cfg.n_outputs, len(x))
    scales = (0.7, 1.0, 1.5, 2.5)
    seen = []

    def stop_after_two(row):
        seen.append(row["threshold_scale"])
        if len(seen) == 2:
            raise Interrupt

    with open_device("virtual", noise_uw=0.5) as dev:
        with pytest.raises(Interrupt):
            sweep_power(cfg, dev, x, y, "aspen", tmp_path, scales=scales, on_row=stop_after_two)
        assert [r["threshold_scale"] for r in read_power_rows(tmp_path / CSV_NAME)] == [0.7, 1.0]
        resumed = []
        rows = sweep_power(cfg, dev, x, y, "aspen", tmp_path, scales=scales,
                           on_row=lambda r: resumed.append(r["threshold_scale"]))
    assert resumed == [1.5, 2.5]  # finished rows are not measured again
    with open(tmp_path / CSV_NAME, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == POWER_COLUMNS
        assert len(list(reader)) == 4
    assert [r["threshold_scale"] for r in rows] == list(scales)
    for r in rows:
        assert r["power_source"] == "modelled" and r["device"] == "virtual" and r["power_samples"] >= 10
        assert r["clock_mhz"] in chip.CLOCKS_MHZ and r["realtime_ok"]
        assert r["total_uw"] == pytest.approx(r["core_uw"] + r["io_uw"], rel=1e-9)
        assert abs(r["core_uw"] - r["core_uw_model"]) < 1.0  # noise 0.5 uW averages out
    spikes = [r["hidden_spikes_per_window"] for r in rows]
    assert spikes[0] > spikes[-1]  # higher threshold, fewer spikes, fewer cycles
    assert rows[0]["cycles_per_step"] > rows[-1]["cycles_per_step"]
    assert rows[0]["core_uw"] > rows[-1]["core_uw"]
    assert (tmp_path / "power_sweep.png").stat().st_size > 1000


def test_auto_clock_follows_the_cycles_and_fixed_clocks_are_separate_rows(tmp_path):
    # a busy net: many hidden neurons with a dense recurrent matrix need more than 6.25 MHz
    rng = np.random.default_rng(11)
    cfg = random_config(rng, max_inputs=15, max_hidden=200, max_outputs=4, regime="busy")
    while cfg.n_hidden < 120:
        cfg = random_config(rng, max_inputs=15, max_hidden=200, max_outputs=4, regime="busy")
    x = events(12, 3, 100, cfg.n_inputs)
    y = np.zeros(3, int)
    with open_device("virtual") as dev:
        auto = sweep_power(cfg, dev, x, y, "busy", tmp_path, scales=(1.0,))
        fixed = sweep_power(cfg, dev, x, y, "busy", tmp_path, scales=(1.0,), clock=50.0)
    a, f = auto[0], fixed[0]
    expected = PowerModel().choose_clock(np.array([a["max_cycles_per_step"]]))[0]
    assert a["clock_mhz"] == expected and a["clock_setting"] == "auto"
    assert f["clock_mhz"] == 50.0 and f["clock_setting"] == "50"
    assert len(read_power_rows(tmp_path / CSV_NAME)) == 2
    assert f["core_uw"] > a["core_uw"] or a["clock_mhz"] == 50.0


def test_a_different_power_model_or_window_count_is_a_new_measurement(tmp_path):
    cfg = small_config(14)
    x, y = events(15, 6, 100), np.zeros(6, int)
    doubled = PowerModel(core_uw_per_mhz=2 * PowerModel().core_uw_per_mhz)
    with open_device("virtual") as dev:
        first = sweep_power(cfg, dev, x, y, "m", tmp_path, scales=(1.0,))
    with open_device("virtual", power_model=doubled) as dev:
        again = sweep_power(cfg, dev, x, y, "m", tmp_path, scales=(1.0,))
        fewer = sweep_power(cfg, dev, x[:3], y[:3], "m", tmp_path, scales=(1.0,))
        assert sweep_power(cfg, dev, x[:3], y[:3], "m", tmp_path, scales=(1.0,)) == fewer  # resumed: nothing new
    assert first[0]["power_model"] == "estimate" and again[0]["power_model"].startswith("estimate:")
    assert again[0]["core_uw"] > first[0]["core_uw"] + 100  # 6.25 MHz x 30 uW/MHz more
    assert fewer[0]["windows"] == 3 and len(read_power_rows(tmp_path / CSV_NAME)) == 3


def test_run_power_sweep_on_a_run_directory_plots_both_models(tmp_path):
    from aspen_deploy.power_sweep import plot_power_sweeps

    data = SimpleNamespace(test=SimpleNamespace(x=events(13, 20, 120), y=np.arange(20) % 4), n_classes=4)
    curves = {}
    with open_device("virtual") as dev:
        for name, seed in (("aspen", 1), ("baseline", 2)):
            run = tmp_path / name
            run.mkdir()
            small_config(seed).save(run / "xylo_config.json")
            (run / "settings.json").write_text(json.dumps({"profile": "quick"}))
            curves[name] = run_power_sweep(run, dev, scales=(0.8, 1.6), windows=8, data=data)
            assert len(curves[name]) == 2 and all(r["windows"] == 8 for r in curves[name])
    out = plot_power_sweeps(curves, tmp_path / "both.png")
    assert out.stat().st_size > 1000
    with pytest.raises(ValueError, match="not found"):
        run_power_sweep(tmp_path / "missing", "virtual", data=data)


def test_power_sweep_csv_with_foreign_columns_is_refused(tmp_path):
    (tmp_path / CSV_NAME).write_text("model,threshold_scale,clock_mhz,core_uw,io_uw,extra\n")
    with open_device("virtual") as dev, pytest.raises(ValueError, match="other columns"):
        sweep_power(small_config(), dev, events(1, 2, 50), np.zeros(2, int), "m", tmp_path, scales=(1.0,))


# =============================================================================== fake samna
# Names and types as Rockpool 3.1.0 uses them for the Xylo IMU
# (rockpool/devices/xylo/syns63300/xylo_samna.py: config_from_specification;
#  xylo_imu_devkit_utils.py: configure_accel_time_mode, config_if_module, set_power_measure,
#  set_xylo_core_clock_freq, get_current_timestep, decode_accel_mode_data;
#  imuif_sim.py: IMUIFSim.export_config / from_config).
INT, BOOL, MATRIX, OPT_INT = "int", "bool", "matrix", "optional int"
FIELDS = {
    "XyloConfiguration": {"operation_mode": object, "imu_if_input_enable": BOOL, "bias_enable": BOOL,
                          "enable_hibernation_mode": BOOL, "time_resolution_wrap": INT},
    "InputConfig": {"weights": MATRIX, "weight_bit_shift": INT},  # config.input.*
    "HiddenConfig": {"weights": MATRIX, "weight_bit_shift": INT, "aliasing": BOOL, "neurons": "HiddenNeuron"},
    "ReadoutConfig": {"weights": MATRIX, "weight_bit_shift": INT, "neurons": "OutputNeuron"},
    "HiddenNeuron": {"threshold": INT, "v_mem_decay": INT, "i_syn_decay": INT, "v_mem_bias": INT,
                     "alias_target": OPT_INT},
    "OutputNeuron": {"threshold": INT, "v_mem_decay": INT, "i_syn_decay": INT, "v_mem_bias": INT},
    "DebugConfig": {"always_update_omp_stat": BOOL, "isyn_clock_enable": BOOL, "ra_clock_enable": BOOL,
                    "bias_clock_enable": BOOL, "hm_clock_enable": BOOL, "ram_power_enable": BOOL,
                    "monitor_neuron_spike": "range", "monitor_neuron_v_mem": "range", "monitor_neuron_i_syn": "range"},
    "InputInterfaceConfig": {"enable": BOOL, "estimator_k_setting": INT, "select_iaf_output": BOOL,
                             "update_matrix_threshold": INT, "delay_threshold": INT, "bypass_jsvd": BOOL,
                             "bpf_bb_values": "ints", "bpf_bwf_values": "ints", "bpf_baf_values": "ints",
                             "bpf_a1_values": "ints", "bpf_a2_values": "ints", "scale_values": "ints",
                             "iaf_threshold_values": "ints"},
}


def _type_ok(kind, v) -> bool:
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if kind == INT:
        return is_int
    if kind == BOOL:
        return isinstance(v, bool)
    if kind == OPT_INT:
        return v is None or is_int
    if kind == MATRIX:
        return isinstance(v, list) and all(isinstance(r, list) and all(isinstance(e, int) for e in r) for r in v)
    if kind == "ints":
        return isinstance(v, list) and len(v) == 15 and all(isinstance(e, int) and not isinstance(e, bool) for e in v)
    if kind == "range":
        return v is None or isinstance(v, FakeNeuronRange)
    if kind in ("HiddenNeuron", "OutputNeuron"):
        return isinstance(v, list) and all(type(n).__name__ == kind for n in v)
    return True


class Strict:
    """Attribute object that accepts only the documented names, with the documented types."""

    def __init__(self, **kw):
        object.__setattr__(self, "_set", {})
        for k, v in kw.items():
            setattr(self, k, v)

    def __setattr__(self, k, v):
        fields = FIELDS[type(self).__name__]
        if k not in fields:
            raise AttributeError(f"{type(self).__name__} has no attribute {k!r}")
        if not _type_ok(fields[k], v):
            raise TypeError(f"{type(self).__name__}.{k} = {v!r} is not of type {fields[k]}")
        self._set[k] = v

    def __getattr__(self, k):
        if k.startswith("_"):
            raise AttributeError(k)
        if k in self._set:
            return self._set[k]
        if k in FIELDS[type(self).__name__]:
            return None
        raise AttributeError(f"{type(self).__name__} has no attribute {k!r}")


class InputConfig(Strict): pass  # noqa: E701
class HiddenConfig(Strict): pass  # noqa: E701
class ReadoutConfig(Strict): pass  # noqa: E701
class HiddenNeuron(Strict): pass  # noqa: E701
class OutputNeuron(Strict): pass  # noqa: E701
class DebugConfig(Strict): pass  # noqa: E701
class InputInterfaceConfig(Strict): pass  # noqa: E701


class XyloConfiguration(Strict):
    def __init__(self):
        super().__init__()
        # nested objects exist from the start, as in samna (config.input.weights = ...)
        for name, cls in (("input", InputConfig), ("hidden", HiddenConfig), ("readout", ReadoutConfig),
                          ("debug", DebugConfig), ("input_interface", InputInterfaceConfig)):
            self._set[name] = cls()


class FakeNeuronRange:
    def __init__(self, start, end):
        self.start, self.end = start, end


def from_samna(sc) -> XyloConfig:
    """Read a fake XyloConfiguration back into our dataclass (so the fake chip can simulate it)."""
    def pop(neurons, alias):
        return NeuronParams(
            threshold=np.array([n.threshold for n in neurons]), v_mem_decay=np.array([n.v_mem_decay for n in neurons]),
            i_syn_decay=np.array([n.i_syn_decay for n in neurons]), v_mem_bias=np.array([n.v_mem_bias for n in neurons]),
            alias_target=[n.alias_target for n in neurons] if alias else None)

    return XyloConfig(input_weights=np.array(sc.input.weights), input_shift=sc.input.weight_bit_shift,
                      hidden_weights=np.array(sc.hidden.weights), hidden_shift=sc.hidden.weight_bit_shift,
                      hidden=pop(sc.hidden.neurons, True), readout_weights=np.array(sc.readout.weights),
                      readout_shift=sc.readout.weight_bit_shift, readout=pop(sc.readout.neurons, False),
                      bias_enable=bool(sc.bias_enable))


def validate_configuration(sc):
    """Range checks a real validate_configuration makes (int8 weights, int16 thresholds, 4-bit decays)."""
    cfg = from_samna(sc)
    for w in (cfg.input_weights, cfg.hidden_weights, cfg.readout_weights):
        if w.size and (w.min() < -128 or w.max() > 127):
            return False, "weight out of int8 range"
    if cfg.hidden.threshold.min() < -32768 or cfg.hidden.threshold.max() > 32767:
        return False, "threshold out of int16 range"
    return True, ""


class Event:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Spike(Event): pass  # noqa: E701
class TriggerProcessing(Event): pass  # noqa: E701
class TriggerReadout(Event): pass  # noqa: E701
class Readout(Event): pass  # noqa: E701
class PowerMeasurement(Event): pass  # noqa: E701


class Node:
    def __init__(self, handler=None):
        self.handler, self.sinks = handler, []

    def emit(self, evs):
        for s in self.sinks:
            s.events.extend(evs)


class Sink:
    def __init__(self, node):
        self.events = []
        node.sinks.append(self)

    def get_events(self):
        out, self.events = self.events, []
        return out


class Source:
    def __init__(self, node):
        self.node = node

    def write(self, evs):
        self.node.handler(list(evs))


IO_CH, CORE_CH = 0, 1


class FakeModel:
    """The chip: applies configurations (state reset) and processes accelerated-time events by
    re-simulating everything since the last apply as one window (exact, and cheap for tiny nets)."""

    def __init__(self, board):
        self.board = board
        self.cfg, self.sc, self.history, self.t, self.pending = None, None, [], 0, []
        self.ram_open = None

    def apply_configuration(self, sc):
        self.board.check_alive()
        assert sc.operation_mode == "AcceleratedTime"
        self.sc, self.cfg, self.history, self.pending = sc, from_samna(sc), [], []
        self.board.applied += 1

    def open_ram_access(self):
        self.ram_open = True

    def close_ram_access(self):
        self.ram_open = False

    def handle(self, evs):
        self.board.check_alive()
        for e in evs:
            if isinstance(e, TriggerReadout):
                self.board.source.emit([Readout(timestep=self.t, output_spikes=[], output_v_mems=[], hidden_spikes=[])])
            elif isinstance(e, Spike):
                self.pending.append(e)
            elif isinstance(e, TriggerProcessing):
                self.process(e.target_timestep)

    def process(self, target):
        self.board.processed_calls += 1
        if self.board.fail_after is not None and self.board.processed_calls > self.board.fail_after:
            self.board.alive = False
            raise RuntimeError("libusb: device disconnected")
        first = self.t + 1
        n_new = target - first
        block = np.zeros((n_new, self.cfg.n_inputs), np.int64)
        for e in self.pending:
            block[e.timestep - first, e.neuron_id] += 1
        self.pending = []
        self.history.extend(block)
        x = np.array(self.history)[None]
        be = FastBackend()
        be.load(self.cfg)
        r = be.run(x)
        start = len(self.history) - n_new
        if self.sc.debug.monitor_neuron_spike is not None:
            # per-step hidden spikes: differences of cumulative counts of prefix runs (the simulator is causal).
            # With no bias and positive thresholds a network at rest stays at rest, so a prefix padded in
            # front with silent steps counts the same spikes: all prefixes then run as one batch.
            ks = range(max(start, 1), start + n_new + 1)
            if (not self.cfg.bias_enable or not self.cfg.hidden.v_mem_bias.any()) and self.cfg.hidden.threshold.min() > 0:
                L = x.shape[1]
                batch = np.zeros((len(ks), L, x.shape[2]), np.int64)
                for j, k in enumerate(ks):
                    batch[j, L - k:] = x[0, :k]
                cum = be.run(batch).hidden_spike_counts
            else:
                cum = np.array([be.run(x[:, :k]).hidden_spike_counts[0] for k in ks])
            if start == 0:
                cum = np.vstack([np.zeros_like(cum[:1]), cum])
            per_step = np.diff(cum, axis=0)
        for i in range(n_new):
            k = start + i
            hid = [int(v) for v in per_step[i]] if self.sc.debug.monitor_neuron_spike is not None else []
            self.board.source.emit([Readout(timestep=first + i, output_spikes=list(r.output_spikes[0, k]),
                                            output_v_mems=list(r.readout_vmem[0, k]), hidden_spikes=hid)])
        self.t = target - 1
        self.board.steps += n_new


class FakePowerMonitor:
    def __init__(self, board):
        self.board, self.node, self.active, self.hz = board, Node(), False, None

    def get_source_node(self):
        return self.node

    def is_auto_power_measurement_active(self):
        return self.active

    def start_auto_power_measurement(self, hz):
        self.active, self.hz, self.board.steps = True, hz, 0

    def stop_auto_power_measurement(self):
        # samples over the simulated time of the steps processed (as if at real-time speed), in watts
        n = int(self.board.steps * chip.DT_S * self.hz)
        f = self.board.clock_hz / 1e6
        evs = []
        for _ in range(n):
            evs += [PowerMeasurement(channel=IO_CH, value=300e-6), PowerMeasurement(channel=CORE_CH, value=(100 + 10 * f) * 1e-6)]
        self.node.emit(evs)
        self.active = False


class FakeIo:
    def __init__(self, board):
        self.board = board

    def set_main_clk_rate(self, hz):
        assert isinstance(hz, int)
        self.board.clock_hz = hz

    def set_saer_clk_rate(self, hz):
        assert hz == int(self.board.clock_hz / 8)

    def set_spi_clk_rate(self, hz):
        assert hz == int(self.board.clock_hz / 20)


class FakeBoard:
    def __init__(self, serial):
        self.serial, self.alive, self.fail_after = serial, True, None
        self.applied = self.processed_calls = self.steps = 0
        self.clock_hz = None
        self.source = Node()
        self.model = FakeModel(self)
        self.sink = Node(self.model.handle)
        self.pm = FakePowerMonitor(self)
        self.io = FakeIo(self)
        self.manual_input = None

    def check_alive(self):
        if not self.alive:
            raise RuntimeError("libusb: device disconnected")

    def get_model(self):
        return self.model

    def get_model_source_node(self):
        return self.source

    def get_model_sink_node(self):
        return self.sink

    def get_power_monitor(self):
        return self.pm

    def get_io_module(self):
        return self.io

    def enable_manual_input_acceleration(self, on):
        self.manual_input = on


def make_fake_samna(boards: list[FakeBoard], others: int = 1) -> types.ModuleType:
    samna = types.ModuleType("samna")
    infos = [SimpleNamespace(device_type_name="DynapcnnDevKit", serial_number="x")] * others
    infos += [SimpleNamespace(device_type_name="XyloImuTestBoard", serial_number=b.serial, board=b) for b in boards]
    samna.device = SimpleNamespace(get_all_devices=lambda: list(infos), open_device=lambda info: info.board)
    samna.graph = SimpleNamespace(sink_from=Sink, source_to=Source)
    samna.xyloImu = SimpleNamespace(
        configuration=SimpleNamespace(XyloConfiguration=XyloConfiguration, HiddenNeuron=HiddenNeuron,
                                      OutputNeuron=OutputNeuron, NeuronRange=FakeNeuronRange),
        validate_configuration=validate_configuration,
        OperationMode=SimpleNamespace(AcceleratedTime="AcceleratedTime", RealTime="RealTime"),
        event=SimpleNamespace(Spike=Spike, TriggerProcessing=TriggerProcessing, TriggerReadout=TriggerReadout,
                              Readout=Readout))
    samna.xyloImuBoards = SimpleNamespace(MeasurementChannels=SimpleNamespace(Io=IO_CH, Core=CORE_CH))
    return samna


@pytest.fixture
def fake_samna(monkeypatch):
    def install(boards, others=1):
        monkeypatch.setitem(sys.modules, "samna", make_fake_samna(boards, others))
        return boards
    return install


# =============================================================================== samna conversion
def test_conversion_sets_every_field_with_samna_names_and_types():
    cfg = small_config(21, imu_if=True)
    samna = make_fake_samna([])
    sc = samna_hdk.to_samna_configuration(cfg, samna)  # Strict raises on any unknown name or wrong type
    back = from_samna(sc)
    for name in ("input_weights", "hidden_weights", "readout_weights"):
        np.testing.assert_array_equal(getattr(back, name), getattr(cfg, name))
    assert (back.input_shift, back.hidden_shift, back.readout_shift) == (cfg.input_shift, cfg.hidden_shift,
                                                                        cfg.readout_shift)
    for pop in ("hidden", "readout"):
        for reg in ("threshold", "v_mem_decay", "i_syn_decay", "v_mem_bias"):
            np.testing.assert_array_equal(getattr(getattr(back, pop), reg), getattr(getattr(cfg, pop), reg))
    assert back.hidden.alias_target == cfg.hidden.alias_target and sc.hidden.aliasing is True
    assert sc.bias_enable is True and sc.imu_if_input_enable is False and sc.debug.always_update_omp_stat is True
    # set only when present (config_from_specification): neurons without an alias never get the field
    assert "alias_target" not in sc.hidden.neurons[0]._set and sc.hidden.neurons[3].alias_target == 7
    # IMU interface: the registers of our imu_if section, a1 as 17-bit two's complement
    from data_prep.frontend import FrontEndSettings

    fe = FrontEndSettings.from_dict(cfg.imu_if)
    ii = sc.input_interface
    filters = fe.filter_params()
    assert ii.bpf_bb_values == [p.B_b for p in filters] and ii.bpf_a2_values == [p.a2 for p in filters]
    assert ii.bpf_a1_values == [p.a1 & 0x1FFFF for p in filters] and all(a < 0 for a in (p.a1 for p in filters))
    assert ii.select_iaf_output is True and ii.iaf_threshold_values == list(range(900, 915))
    assert ii.bypass_jsvd is True and ii.scale_values is None and ii.enable is None  # interface left off
    # accelerated-time monitoring: readout membrane always, hidden spikes only when recording
    samna_hdk.configure_accelerated(sc, samna, cfg.n_hidden, cfg.n_outputs, record_activity=False)
    assert sc.operation_mode == "AcceleratedTime" and sc.debug.monitor_neuron_spike is None
    rng = sc.debug.monitor_neuron_v_mem
    assert (rng.start, rng.end) == (cfg.n_hidden, cfg.n_hidden + cfg.n_outputs)


def test_conversion_of_random_configs_roundtrips():
    rng = np.random.default_rng(5)
    samna = make_fake_samna([])
    for _ in range(5):
        cfg = random_config(rng)
        back = from_samna(samna_hdk.to_samna_configuration(cfg, samna))
        assert back.to_dict()["hidden"] == cfg.to_dict()["hidden"]
        assert back.to_dict()["readout"] == cfg.to_dict()["readout"]
        assert back.to_dict()["input"] == cfg.to_dict()["input"]


# =============================================================================== samna availability
def test_samna_missing_gives_the_install_hint(monkeypatch):
    monkeypatch.delitem(sys.modules, "samna", raising=False)
    monkeypatch.setattr(samna_hdk.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(samna_hdk.SamnaMissingError) as e:
        open_device("hdk")
    assert "pip install 'aspen_deploy[hdk]'" in str(e.value) and "\n" not in str(e.value)


def test_stub_samna_is_detected_without_importing_it(monkeypatch, tmp_path):
    pkg = tmp_path / "site" / "samna"
    pkg.mkdir(parents=True)
    marker = tmp_path / "imported"
    # what the index stub does on import: start installing the real binary
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('pip install ...')\n")
    monkeypatch.delitem(sys.modules, "samna", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert samna_hdk.samna_status()[0] == "stub"
    with pytest.raises(samna_hdk.SamnaStubError, match="stub") as e:
        open_device("hdk")
    assert "\n" not in str(e.value) and not marker.exists()
    (pkg / "_samna.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")  # a compiled library: the real thing
    assert samna_hdk.samna_status()[0] == "real"


# =============================================================================== HDK flows (fake board)
def test_no_board_and_several_boards_are_one_line_errors(fake_samna):
    fake_samna([])
    with pytest.raises(samna_hdk.NoBoardError, match="no Xylo IMU HDK found"):
        open_device("hdk")
    fake_samna([FakeBoard("A1"), FakeBoard("B2")])
    with pytest.raises(samna_hdk.SeveralBoardsError, match="--board") as e:
        open_device("hdk")
    assert "serial A1" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(samna_hdk.NoBoardError, match="matches --board 'C3'"):
        open_device("hdk", board="C3")
    with open_device("hdk", board="B2") as dev:
        assert "B2" in dev._label
    with open_device("hdk", board="0") as dev:
        assert "A1" in dev._label


def test_hdk_infers_like_the_fast_backend_and_changes_threshold_and_clock(fake_samna):
    (board,) = fake_samna([FakeBoard("S1")])
    cfg = small_config(31, n_hid=12, bias=False)
    x = events(32, 3, 25)
    with open_device("hdk") as dev:
        assert dev.power_source == "measured" and board.manual_input is True
        dev.load(cfg)
        assert_same_result(dev.run(x), fast_run(cfg, x))
        assert board.applied == 3 and board.model.ram_open is True  # one apply (state reset) per window
        dev.set_threshold_scale(1.8)
        r = dev.run(x, record_activity=False)
        ref = fast_run(cfg, x, 1.8)
        np.testing.assert_array_equal(r.readout_vmem, ref.readout_vmem)
        assert np.isnan(r.cycles_per_step).all() and board.model.ram_open is False
        with pytest.raises(ClockError):
            dev.set_clock(30)
        assert dev.set_clock(12.5) == 12.5 and board.clock_hz == 12_500_000
        dev.run(x, record_activity=False)
        s = dev.power_samples()
        assert len(s) == int(3 * 25 * chip.DT_S * 5) == 1  # 0.375 s of steps at 5 Hz
        np.testing.assert_allclose(s.core_uw, 100 + 10 * 12.5)  # watts -> microwatts
        np.testing.assert_allclose(s.io_uw, 300)
        parts = list(dev.stream([x[0, :10], x[0, 10:]]))
        whole = fast_run(cfg.with_threshold_scale(1.8), x[:1])
        np.testing.assert_array_equal(np.concatenate([p.readout_vmem for p in parts], axis=1), whole.readout_vmem)


def test_board_lost_mid_sweep_keeps_finished_rows(fake_samna, tmp_path):
    (board,) = fake_samna([FakeBoard("S1")])
    cfg = small_config(41, n_hid=10, bias=False)
    x = events(42, 2, 100)  # 2 x 100 steps = 1 s -> 5 power samples per run
    y = np.zeros(2, int)
    board.fail_after = 2 * 2 * 2  # two scales: 2 passes x 2 windows each
    with open_device("hdk") as dev:
        with pytest.raises(samna_hdk.BoardLostError) as e:
            sweep_power(cfg, dev, x, y, "aspen", tmp_path, scales=(0.8, 1.2, 1.6))
    assert "lost the Xylo IMU HDK" in str(e.value) and "\n" not in str(e.value)
    assert isinstance(e.value, DeviceError)
    rows = read_power_rows(tmp_path / CSV_NAME)
    assert [r["threshold_scale"] for r in rows] == [0.8, 1.2]
    assert all(r["power_source"] == "measured" and r["device"] == "hdk" for r in rows)
    # reconnect and resume: only the missing scale is measured
    (board,) = fake_samna([FakeBoard("S1")])
    with open_device("hdk") as dev:
        rows = sweep_power(cfg, dev, x, y, "aspen", tmp_path, scales=(0.8, 1.2, 1.6))
    assert [r["threshold_scale"] for r in rows] == [0.8, 1.2, 1.6] and board.processed_calls == 4


def test_power_samples_must_have_equal_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        PowerSamples(np.zeros(2), np.zeros(2), np.zeros(3))
