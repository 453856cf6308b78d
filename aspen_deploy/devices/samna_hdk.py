"""The Xylo IMU HDK through samna: the ONLY module that imports samna, and only inside functions.

Every samna name used here is one that Rockpool 3.1.0 uses for the Xylo IMU
(``rockpool/devices/xylo/syns63300/xylo_samna.py``, ``xylo_imu_devkit_utils.py``,
``imu_monitor.py``, ``imuif_sim.py``); the comments name the function each comes from.

samna on the package index is a stub: importing it starts a pip process that fetches the
real binary from SynSense's own index (shared DESIGN.md, "samna"). `samna_status` therefore
decides *without importing*: ``importlib.util.find_spec`` locates the package without running
it, and a package that holds no compiled extension module (``.so``/``.pyd``) is the stub.
Only a package that looks real is imported. (The alternative, importing in a subprocess
with a timeout and no network, would still start the stub's pip process on every check.)

Flow (accelerated time, as Rockpool's ``XyloSamna.evolve``): a window is sent as
``Spike(neuron_id=channel, timestep)`` events, one per input event, then
``TriggerProcessing(target_timestep=last + 1)``; the FPGA returns one ``Readout`` event per
time step with ``output_spikes``, ``output_v_mems`` (readout membrane, monitored) and, when
hidden spikes are monitored, ``hidden_spikes``. Each window starts from reset state by applying
the configuration again: samna's ``HiddenNeuron`` carries the neuron state
(``membrane_potential``, ``synaptic_current``, samna reference docs), left at 0 here; the
hardware test suite checks this against the bit-exact simulator. Thresholds change the same
way (Rockpool has no threshold-update call).

Power: the board's monitor (``get_power_monitor``) reports the Io and Core rails in watts at
``monitor_hz`` while a run is in progress. Hidden-spike monitoring needs RAM access, which
raises power (samna's Xylo IMU power-measurement example), so a run with
``record_activity=False`` closes RAM access and reads only the readout: that is the run to
measure power in. Accelerated time runs faster than real time; `HdkDevice.steps_per_s`
reports the rate actually achieved so the model can be compared at the same busy-cycle rate.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from aspen_deploy import chip
from aspen_deploy.backends.base import RunResult, check_events, predict_from_vmem
from aspen_deploy.backends.cycles import cycles_per_step
from aspen_deploy.config import XyloConfig
from aspen_deploy.devices import DEFAULT_MONITOR_HZ, DeviceBase, DeviceError, PowerSamples, check_clock

HDK_TYPE_NAME = "XyloImuTestBoard"  # xylo_imu_devkit_utils.find_xylo_imu_boards
INSTALL_HINT = "pip install 'aspen_deploy[hdk]'"
A1_MASK = 0x1FFFF  # 17-bit two's complement tap register: xylo_imu_devkit_utils.config_if_module
READOUT_TIMEOUT_S = 3.0  # xylo_imu_devkit_utils.get_current_timestep default
HDK_DEFAULT_WINDOWS = 64  # accelerated time on the board is slow: a default sweep subset that ends


# ---- errors (one line each) -------------------------------------------------------------------
class SamnaMissingError(DeviceError):
    """samna is not installed."""


class SamnaStubError(DeviceError):
    """samna is the package-index stub (or broken), not SynSense's device library."""


class NoBoardError(DeviceError):
    """No Xylo IMU HDK is connected (or none matches --board)."""


class SeveralBoardsError(DeviceError):
    """More than one Xylo IMU HDK is connected and --board was not given."""


class BoardLostError(DeviceError):
    """The board stopped answering in the middle of a run."""


class SamnaConfigError(DeviceError):
    """samna's own validation refused the converted configuration."""


# ---- finding and importing samna ------------------------------------------------------------
def _has_extension(root: Path, depth: int = 2) -> bool:
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES) + (".so", ".pyd", ".dylib")
    stack = [(root, 0)]
    while stack:
        d, lvl = stack.pop()
        try:
            entries = list(d.iterdir())
        except OSError:
            continue
        for e in entries:
            if e.is_file() and e.name.endswith(suffixes):
                return True
            if e.is_dir() and lvl < depth and not e.name.startswith((".", "__pycache__")):
                stack.append((e, lvl + 1))
    return False


def samna_status() -> tuple[str, str]:
    """``("imported" | "real" | "stub" | "missing", where)`` for samna, without importing it.

    ``find_spec`` of a top-level name locates the package but does not execute it; a package
    without any compiled extension module is the stub that would pip-install on import.
    """
    if sys.modules.get("samna") is not None:
        return "imported", str(getattr(sys.modules["samna"], "__file__", "") or "<in memory>")
    try:
        spec = importlib.util.find_spec("samna")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return "missing", ""
    if spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            if _has_extension(Path(loc)):
                return "real", str(loc)
        return "stub", str(next(iter(spec.submodule_search_locations)))
    origin = spec.origin or ""
    return ("real" if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) else "stub"), origin


def import_samna() -> Any:
    """The samna module, or a one-line `DeviceError` saying what is wrong and how to fix it."""
    mod = sys.modules.get("samna")
    if mod is not None:
        return mod
    status, where = samna_status()
    if status == "missing":
        raise SamnaMissingError(f"the Xylo IMU HDK needs SynSense's samna library, which is not installed: {INSTALL_HINT}")
    if status == "stub":
        raise SamnaStubError(
            f"samna at {where} is the package-index stub without SynSense's device library (importing it would "
            "try to pip-install the binary from SynSense's own index); install the real samna on a machine with "
            f"network access ({INSTALL_HINT}, then 'python -c \"import samna\"' once online) and retry")
    try:
        import samna  # noqa: PLC0415 - the one place samna is imported
    except Exception as e:  # a broken install fails in many ways; all mean the same to the user
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise SamnaStubError(f"samna is installed but failed to import ({type(e).__name__}: {msg}); "
                             f"reinstall it: {INSTALL_HINT}") from None
    return samna


# ---- boards ---------------------------------------------------------------------------------
def describe_board(info: Any, index: int) -> str:
    serial = getattr(info, "serial_number", None)
    return f"#{index}" + (f" (serial {serial})" if serial not in (None, "") else "")


def list_boards(samna: Any) -> list[Any]:
    """Xylo IMU HDKs among ``samna.device.get_all_devices()`` (find_xylo_imu_boards)."""
    return [d for d in samna.device.get_all_devices() if getattr(d, "device_type_name", None) == HDK_TYPE_NAME]


def select_board(infos: list[Any], board: str | None) -> tuple[int, Any]:
    """(index, device info) of the board to use: the only one, or the one ``board`` names (index or serial)."""
    if not infos:
        raise NoBoardError(f"no Xylo IMU HDK found (samna lists no {HDK_TYPE_NAME}): connect the board by USB "
                           "(check cable and USB permissions) and retry")
    found = ", ".join(describe_board(d, i) for i, d in enumerate(infos))
    if board is None:
        if len(infos) > 1:
            raise SeveralBoardsError(f"{len(infos)} Xylo IMU HDKs are connected ({found}); choose one with "
                                     "--board INDEX or --board SERIAL")
        return 0, infos[0]
    b = str(board).strip()
    for i, d in enumerate(infos):
        if b == str(i) or b == str(getattr(d, "serial_number", None)):
            return i, d
    raise NoBoardError(f"no Xylo IMU HDK matches --board {board!r}; connected: {found}")


# ---- configuration conversion ------------------------------------------------------------------
def _rows(m: np.ndarray) -> list[list[int]]:
    return [[int(v) for v in row] for row in np.asarray(m)]


def imu_if_fields(imu_if: Mapping[str, Any]) -> dict[str, Any]:
    """Our ``imu_if`` section -> values for samna's ``InputInterfaceConfig`` (names from Rockpool's
    ``xylo_imu_devkit_utils.config_if_module`` and ``imuif_sim.IMUIFSim.export_config``).

    Filters are axis-major (channel = 5 axis + band), as the registers are; ``a1`` is written
    as its 17-bit two's complement (``a1 & 0x1FFFF``, config_if_module).
    """
    from data_prep.frontend import FrontEndSettings

    fe = FrontEndSettings.from_dict(imu_if)
    filters = fe.filter_params()
    out: dict[str, Any] = {
        "bpf_bb_values": [p.B_b for p in filters],
        "bpf_bwf_values": [p.B_wf for p in filters],
        "bpf_baf_values": [p.B_af for p in filters],
        "bpf_a1_values": [p.a1 & A1_MASK for p in filters],
        "bpf_a2_values": [p.a2 for p in filters],
        "select_iaf_output": fe.encoder.kind == "iaf",
        "bypass_jsvd": not fe.rotation_removal,
    }
    key = "iaf_threshold_values" if fe.encoder.kind == "iaf" else "scale_values"
    out[key] = [int(v) for v in fe.encoder.values]
    return out


def to_samna_configuration(cfg: XyloConfig, samna: Any) -> Any:
    """`XyloConfig` -> ``samna.xyloImu.configuration.XyloConfiguration`` (config_from_specification).

    Field by field (Rockpool ``xylo_samna.config_from_specification`` unless noted):
    ``input/hidden/readout.weight_bit_shift`` (int), ``input.weights`` (Nin x Nien),
    ``hidden.weights`` (Nhid x Nhid, [pre][post]), ``readout.weights`` (Noen x Nout, the last
    Noen hidden neurons), ``hidden.aliasing`` (bool), ``hidden.neurons`` = ``HiddenNeuron`` with
    ``threshold``, ``v_mem_decay``, ``i_syn_decay``, ``v_mem_bias``, ``alias_target`` (only when
    set), ``readout.neurons`` = ``OutputNeuron`` with the same four registers, ``bias_enable``,
    ``imu_if_input_enable = False`` and ``debug.always_update_omp_stat = True``; the IMU
    interface registers from ``imu_if`` (`imu_if_fields`) go to ``input_interface``, which stays
    disabled: in accelerated time the host sends the input events.
    """
    conf = samna.xyloImu.configuration
    sc = conf.XyloConfiguration()
    sc.imu_if_input_enable = False
    sc.debug.always_update_omp_stat = True
    sc.bias_enable = bool(cfg.bias_enable)
    n_hid = cfg.n_hidden
    aliases = list(cfg.hidden.alias_target) if cfg.hidden.alias_target is not None else [None] * n_hid
    sc.hidden.aliasing = any(a is not None for a in aliases)
    sc.input.weight_bit_shift = int(cfg.input_shift)
    sc.hidden.weight_bit_shift = int(cfg.hidden_shift)
    sc.readout.weight_bit_shift = int(cfg.readout_shift)
    sc.input.weights = _rows(cfg.input_weights)
    sc.hidden.weights = _rows(cfg.hidden_weights)
    sc.readout.weights = _rows(cfg.readout_weights)
    hidden = []
    for i in range(n_hid):
        n = conf.HiddenNeuron()
        n.threshold = int(cfg.hidden.threshold[i])
        n.v_mem_decay = int(cfg.hidden.v_mem_decay[i])
        n.i_syn_decay = int(cfg.hidden.i_syn_decay[i])
        n.v_mem_bias = int(cfg.hidden.v_mem_bias[i])
        if aliases[i] is not None:
            n.alias_target = int(aliases[i])
        hidden.append(n)
    sc.hidden.neurons = hidden
    readout = []
    for k in range(cfg.n_outputs):
        n = conf.OutputNeuron()
        n.threshold = int(cfg.readout.threshold[k])
        n.v_mem_decay = int(cfg.readout.v_mem_decay[k])
        n.i_syn_decay = int(cfg.readout.i_syn_decay[k])
        n.v_mem_bias = int(cfg.readout.v_mem_bias[k])
        readout.append(n)
    sc.readout.neurons = readout
    if cfg.imu_if:
        for name, value in imu_if_fields(cfg.imu_if).items():
            setattr(sc.input_interface, name, value)
    return sc


def configure_accelerated(sc: Any, samna: Any, n_hidden: int, n_out: int, record_activity: bool) -> Any:
    """Accelerated-time mode with readout-membrane monitoring, plus hidden spikes when recording
    (xylo_imu_devkit_utils.configure_accel_time_mode, "Vmem" readout and record branches)."""
    conf = samna.xyloImu.configuration
    sc.operation_mode = samna.xyloImu.OperationMode.AcceleratedTime
    sc.imu_if_input_enable = False
    sc.debug.always_update_omp_stat = True
    sc.debug.isyn_clock_enable = True
    sc.debug.ra_clock_enable = True
    sc.debug.bias_clock_enable = True
    sc.debug.hm_clock_enable = True
    sc.debug.ram_power_enable = True
    sc.debug.monitor_neuron_i_syn = None
    sc.debug.monitor_neuron_v_mem = conf.NeuronRange(n_hidden, n_hidden + n_out)  # readout neurons follow hidden
    sc.debug.monitor_neuron_spike = conf.NeuronRange(0, n_hidden) if record_activity else None
    return sc


# ---- the device ---------------------------------------------------------------------------------
class HdkDevice(DeviceBase):
    """A Xylo IMU HDK (``power_source = "measured"``); see the module docstring for the flow."""

    name = "hdk"
    power_source = "measured"
    default_windows = HDK_DEFAULT_WINDOWS

    def __init__(self, board: str | None = None, monitor_hz: float = DEFAULT_MONITOR_HZ,
                 read_timeout_s: float | None = None) -> None:
        self.board = board
        self.monitor_hz = float(monitor_hz)
        self.read_timeout_s = read_timeout_s
        self._samna: Any = None
        self._hdk: Any = None
        self._label = "Xylo IMU HDK"
        self._config: XyloConfig | None = None
        self._scaled: XyloConfig | None = None
        self._samna_cfg: dict[bool, Any] = {}
        self._clock = max(chip.CLOCKS_MHZ)
        self._samples = PowerSamples.empty()
        self._steps_per_s = float("nan")
        self._run_seconds = float("nan")  # wall time of the last run, re-applies between windows included

    # ---- lifetime ----
    def open(self) -> "HdkDevice":
        if self._hdk is not None:
            return self
        samna = import_samna()
        with self._guard("listing devices", lost=False):
            infos = list_boards(samna)
        index, info = select_board(infos, self.board)
        self._label = f"Xylo IMU HDK {describe_board(info, index)}"
        with self._guard("opening the board", lost=False):
            hdk = samna.device.open_device(info)
            self._read_buf = samna.graph.sink_from(hdk.get_model_source_node())  # new_xylo_read_buffer
            self._write_buf = samna.graph.source_to(hdk.get_model_sink_node())  # new_xylo_write_buffer
            self._pm = hdk.get_power_monitor()  # set_power_measure
            self._power_buf = samna.graph.sink_from(self._pm.get_source_node())
            if self._pm.is_auto_power_measurement_active():
                self._pm.stop_auto_power_measurement()
            hdk.enable_manual_input_acceleration(True)  # configure_accel_time_mode: host-fed input
        self._samna, self._hdk = samna, hdk
        self.set_clock(self._clock)
        return self

    def close(self) -> None:
        hdk, self._hdk = self._hdk, None
        if hdk is None:
            return
        try:
            if self._pm.is_auto_power_measurement_active():
                self._pm.stop_auto_power_measurement()
            close = getattr(self._samna.device, "close_device", None)
            if close is not None:
                close(hdk)
        except Exception:  # the board may already be gone; closing must not raise
            pass

    def _require_open(self) -> Any:
        if self._hdk is None:
            raise DeviceError("the HDK device is not open: use 'with open_device(\"hdk\") as dev:' or call open()")
        return self._hdk

    @contextmanager
    def _guard(self, what: str, lost: bool = True) -> Iterator[None]:
        """Turn any failure of a samna call into a one-line DeviceError naming the board and the step."""
        try:
            yield
        except DeviceError:
            raise
        except Exception as e:
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if lost:
                raise BoardLostError(f"lost the {self._label} while {what} ({type(e).__name__}: {msg}); reconnect "
                                     "it and run the command again (finished rows are kept)") from None
            raise DeviceError(f"samna failed while {what} ({type(e).__name__}: {msg})") from None

    # ---- configuration ----
    def load(self, config: XyloConfig) -> None:
        self._config = config
        self._set_scaled(config)

    def set_threshold_scale(self, scale: float) -> None:
        if self._config is None:
            raise RuntimeError("load a configuration before setting the threshold scale")
        self._set_scaled(self._config.with_threshold_scale(scale))

    def _set_scaled(self, cfg: XyloConfig) -> None:
        """Convert and validate now (errors early); applied before each window."""
        self._require_open()
        samna = self._samna
        self._samna_cfg = {}
        for record in (True, False):
            sc = configure_accelerated(to_samna_configuration(cfg, samna), samna, cfg.n_hidden, cfg.n_outputs, record)
            with self._guard("validating the configuration", lost=False):
                ok, msg = samna.xyloImu.validate_configuration(sc)
            if not ok:
                raise SamnaConfigError(f"samna refuses the configuration: {str(msg).strip() or 'no reason given'} "
                                       "(run 'aspen check' on it)")
            self._samna_cfg[record] = sc
        self._scaled = cfg

    def _apply(self, record_activity: bool) -> None:
        """Apply the configuration (resets the network state) and set RAM access (xylo_samna.evolve)."""
        hdk = self._require_open()
        with self._guard("applying the configuration"):
            hdk.get_model().apply_configuration(self._samna_cfg[record_activity])
            if record_activity:
                hdk.get_model().open_ram_access()  # hidden-spike monitoring reads RAM
            else:
                hdk.get_model().close_ram_access()  # saves power (samna power-measurement example)

    # ---- clock ----
    def set_clock(self, mhz: float) -> float:
        """Main, SAER and SPI clocks as xylo_imu_devkit_utils.set_xylo_core_clock_freq sets them."""
        f = check_clock(mhz)
        hdk = self._require_open()
        with self._guard("setting the clock"):
            io = hdk.get_io_module()
            io.set_main_clk_rate(int(round(f * 1e6)))
            io.set_saer_clk_rate(int(f * 1e6 / 8))
            io.set_spi_clk_rate(int(f * 1e6 / 20))
        self._clock = f
        return f

    @property
    def clock_mhz(self) -> float:
        return self._clock

    @property
    def steps_per_s(self) -> float:
        return self._steps_per_s

    # ---- running ----
    def run(self, events: np.ndarray, record_activity: bool = True) -> RunResult:
        if self._scaled is None:
            raise RuntimeError("load a configuration before running the HDK")
        cfg = self._scaled
        x = np.minimum(check_events(events, cfg.n_inputs), chip.MAX_INPUT_COUNT)
        n, t = x.shape[:2]
        out_spk = np.zeros((n, t, cfg.n_outputs), np.int64)
        vmem = np.zeros((n, t, cfg.n_outputs), np.int64)
        hidden = np.zeros((n, t, cfg.n_hidden), np.int64) if record_activity else None
        with self._power_run():
            for i in range(n):
                self._apply(record_activity)
                s, v, h = self._evolve(x[i], record_activity)
                out_spk[i], vmem[i] = s, v
                if hidden is not None:
                    hidden[i] = h
        if hidden is not None:
            counts = hidden.sum(axis=1)
            cyc = cycles_per_step(cfg, x, hidden)
        else:
            counts = np.full((n, cfg.n_hidden), np.nan)
            cyc = np.full((n, t), np.nan)
        self._steps_per_s = n * t / max(self._run_seconds, 1e-9)
        return RunResult(output_spikes=out_spk, readout_vmem=vmem, hidden_spike_counts=counts,
                         cycles_per_step=cyc, prediction=predict_from_vmem(vmem))

    def stream(self, chunks: Iterable[np.ndarray]) -> Iterator[RunResult]:
        """One continuous run: the state is reset once, then kept from chunk to chunk."""
        if self._scaled is None:
            raise RuntimeError("load a configuration before streaming")
        cfg = self._scaled
        steps = 0
        with self._power_run():
            self._apply(True)
            for c in chunks:
                x = np.minimum(check_events(c, cfg.n_inputs)[0], chip.MAX_INPUT_COUNT)
                s, v, h = self._evolve(x, True)
                steps += len(x)
                yield RunResult(output_spikes=s[None], readout_vmem=v[None], hidden_spike_counts=h.sum(axis=0)[None],
                                cycles_per_step=cycles_per_step(cfg, x[None], h[None]),
                                prediction=predict_from_vmem(v[None]))
        self._steps_per_s = steps / max(self._run_seconds, 1e-9)

    def power_samples(self) -> PowerSamples:
        return self._samples

    @contextmanager
    def _power_run(self) -> Iterator[None]:
        """Monitor power while the body runs (set_power_measure / xylo_samna.evolve(record_power=True))."""
        self._require_open()
        with self._guard("starting the power monitor"):
            self._power_buf.get_events()  # drop samples from before this run
            self._pm.start_auto_power_measurement(self.monitor_hz)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._run_seconds = time.perf_counter() - t0
            try:
                self._pm.stop_auto_power_measurement()
            except Exception:  # the body's error (e.g. board lost) is the one to report
                pass
        with self._guard("reading the power monitor"):
            events = self._power_buf.get_events()
            channels = self._samna.xyloImuBoards.MeasurementChannels
            io = np.array([e.value for e in events if e.channel == int(channels.Io)], dtype=np.float64) * 1e6
            core = np.array([e.value for e in events if e.channel == int(channels.Core)], dtype=np.float64) * 1e6
        k = min(len(io), len(core))
        self._samples = PowerSamples((np.arange(k) + 1) / self.monitor_hz, core[:k], io[:k])

    def _current_timestep(self) -> int:
        """xylo_imu_devkit_utils.get_current_timestep: TriggerReadout, then the first Readout's timestep."""
        ev_mod = self._samna.xyloImu.event
        with self._guard("reading the current time step"):
            self._read_buf.get_events()
            self._write_buf.write([ev_mod.TriggerReadout()])
            t_end = time.time() + READOUT_TIMEOUT_S
            while time.time() < t_end:
                for e in self._read_buf.get_events():
                    if isinstance(e, ev_mod.Readout):
                        return int(e.timestep)
        raise BoardLostError(f"the {self._label} did not answer a readout request within {READOUT_TIMEOUT_S:g} s; "
                             "reconnect it and run the command again (finished rows are kept)")

    def _evolve(self, x: np.ndarray, record_activity: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One (T, Nin) block in accelerated time (xylo_samna.XyloSamna.evolve): spikes, membrane, hidden spikes."""
        cfg = self._scaled
        assert cfg is not None
        ev_mod = self._samna.xyloImu.event
        t = len(x)
        start = self._current_timestep() + 1
        final = start + t - 1
        steps, chans = np.nonzero(x)
        spikes = [ev_mod.Spike(neuron_id=int(c), timestep=int(start + s))
                  for s, c in zip(steps, chans) for _ in range(int(x[s, c]))]
        spikes.append(ev_mod.TriggerProcessing(target_timestep=int(final + 1)))
        timeout = self.read_timeout_s if self.read_timeout_s is not None else 5.0 + 0.02 * t
        out_spk = np.zeros((t, cfg.n_outputs), np.int64)
        vmem = np.zeros((t, cfg.n_outputs), np.int64)
        hidden = np.zeros((t, cfg.n_hidden), np.int64) if record_activity else None
        seen = np.zeros(t, bool)
        with self._guard("running a window"):
            self._read_buf.get_events()
            self._write_buf.write(spikes)
            t_end = time.time() + timeout
            while not seen[-1] and time.time() < t_end:
                for e in self._read_buf.get_events():  # blocking_read + decode_accel_mode_data
                    if not isinstance(e, ev_mod.Readout):
                        continue
                    i = int(e.timestep) - start
                    if 0 <= i < t:
                        out_spk[i] = list(e.output_spikes)[: cfg.n_outputs]
                        vmem[i] = list(e.output_v_mems)[: cfg.n_outputs]
                        if hidden is not None:
                            hidden[i] = list(e.hidden_spikes)[: cfg.n_hidden]
                        seen[i] = True
        if not seen.all():
            raise BoardLostError(f"the {self._label} returned {int(seen.sum())} of {t} time steps within {timeout:.0f} s; "
                                 "reconnect it and run the command again (finished rows are kept)")
        return out_spk, vmem, hidden
