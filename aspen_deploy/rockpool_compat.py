"""The one module that touches Rockpool's Xylo IMU device internals (rockpool 3.1.0, xylosim 0.1.3).

Why this module exists
----------------------
``import rockpool.devices.xylo`` fails without samna: ``syns65302/__init__.py`` imports a samna
module outside its ``try`` block. Pre-registering a bare package module for
``rockpool.devices.xylo`` (a ``types.ModuleType`` whose ``__path__`` is the package folder) in
``sys.modules`` skips that ``__init__`` and lets ``rockpool.devices.xylo.syns63300`` import
(mapper, ``XyloSim``, IMU IF simulation). Nothing here runs at import time: every Rockpool
import happens inside a function, and samna is never imported (its PyPI stub would start a pip
process, see DESIGN.md).

Configurations are handed to Rockpool as plain attribute objects (``types.SimpleNamespace``)
with samna's field names, exactly what ``XyloSim.from_config`` reads from a
``samna.xyloImu.configuration.XyloConfiguration``.

Alias target 0
--------------
Rockpool's ``XyloSim.from_config`` does ``if neuron.alias_target: aliases.append([target])``,
so an alias to hidden neuron 0 is silently dropped. On the chip (samna) ``alias_target`` is an
optional neuron index and 0 is a valid target, and xylosim's ``XyloLayer`` honours
``aliases=[[0]]``. Decision: **our backends implement alias 0 as the chip does.**
`xylosim_from_config` builds through ``from_config`` (so the field mapping is Rockpool's own)
and, only when some neuron aliases to 0, puts the dropped alias back by rebuilding through
``XyloSim.from_specification`` with the identical parameters (``from_specification`` passes
``aliases`` through verbatim). `rockpool_from_config_unpatched` keeps Rockpool's behaviour for
anyone who wants to see the difference. A plain ``XyloSim.from_config`` therefore disagrees
with the aspen backends exactly for configurations that alias to neuron 0; the design-rule
checker should warn about (or refuse) ``alias_target == 0`` so that third-party tools that go
through ``from_config`` see the same network.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from aspen_deploy.config import XyloConfig

_XYLO_PKG = "rockpool.devices.xylo"
OUTPUT_MODES = ("Vmem", "Spike", "Isyn")


def _ensure_xylo_package() -> None:
    """Register a bare ``rockpool.devices.xylo`` package so its sub-packages import without samna."""
    if _XYLO_PKG in sys.modules:
        return
    import rockpool.devices as devices

    pkg = types.ModuleType(_XYLO_PKG)
    pkg.__path__ = [os.path.join(devices.__path__[0], "xylo")]  # type: ignore[attr-defined]
    pkg.__package__ = _XYLO_PKG
    pkg.__doc__ = "bare package registered by aspen_deploy.rockpool_compat (the real __init__ needs samna)"
    sys.modules[_XYLO_PKG] = pkg
    devices.xylo = pkg  # type: ignore[attr-defined]


@functools.cache
def import_xylo_imu() -> types.ModuleType:
    """The ``rockpool.devices.xylo.syns63300`` module (Xylo IMU), imported without samna (cached)."""
    _ensure_xylo_package()
    return importlib.import_module(f"{_XYLO_PKG}.syns63300")


def imuif_module() -> types.ModuleType:
    """``syns63300.imuif`` (filter bank, rotation removal, spike encoders)."""
    import_xylo_imu()
    return importlib.import_module(f"{_XYLO_PKG}.syns63300.imuif")


def imuif_sim_class() -> type:
    """Rockpool's ``IMUIFSim`` class (the package ``__init__`` replaces it by a samna shim)."""
    import_xylo_imu()
    return importlib.import_module(f"{_XYLO_PKG}.syns63300.imuif_sim").IMUIFSim


def xylo_mapper() -> Callable[..., Any]:
    """Rockpool's Xylo IMU ``mapper`` function."""
    return import_xylo_imu().mapper


# ---- configurations as samna-shaped attribute objects ------------------------------------------
def _attributes(v: Any) -> Any:
    """JSON-shaped dicts (and lists of them) as attribute objects; other values as they are."""
    if isinstance(v, dict):
        return types.SimpleNamespace(**{k: _attributes(x) for k, x in v.items()})
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return [_attributes(x) for x in v]
    return v


def config_namespace(cfg: XyloConfig) -> types.SimpleNamespace:
    """``cfg`` as plain attribute objects with samna's ``XyloConfiguration`` field names: the
    sections of `XyloConfig.to_dict`, whose field names are samna's. Weights are nested lists of
    Python ints (as samna returns them)."""
    d = cfg.to_dict()
    return types.SimpleNamespace(**{k: _attributes(d[k]) for k in ("input", "hidden", "readout", "bias_enable")})


def hidden_aliases(cfg: XyloConfig) -> list[list[int]]:
    """Per hidden neuron, the list of alias targets as xylosim's ``XyloLayer`` takes it ([] or [t])."""
    al = cfg.hidden.alias_target or [None] * cfg.n_hidden
    return [[] if a is None else [int(a)] for a in al]


def _check_mode(output_mode: str) -> None:
    if output_mode not in OUTPUT_MODES:
        raise ValueError(f"output_mode must be one of {OUTPUT_MODES}, got {output_mode!r}")


def rockpool_from_config_unpatched(cfg: XyloConfig, output_mode: str = "Vmem") -> Any:
    """Rockpool's ``XyloSim.from_config`` on `config_namespace` as it is (drops aliases to neuron 0)."""
    _check_mode(output_mode)
    return import_xylo_imu().XyloSim.from_config(config_namespace(cfg), dt=cfg.dt, output_mode=output_mode)


def xylosim_from_config(cfg: XyloConfig, output_mode: str = "Vmem") -> Any:
    """A Rockpool ``XyloSim`` (xylosim-backed) for ``cfg``, with chip alias semantics.

    Built by ``XyloSim.from_config`` from samna-named attribute objects; when a hidden neuron
    aliases to neuron 0 (dropped by ``from_config``), built instead by
    ``XyloSim.from_specification`` with the same integers and the aliases verbatim.
    ``output_mode``: what ``evolve`` returns ("Vmem", "Spike" or "Isyn" of the readout).
    """
    _check_mode(output_mode)
    aliases = hidden_aliases(cfg)
    if not any(a == [0] for a in aliases):
        return rockpool_from_config_unpatched(cfg, output_mode)
    kwargs = _spec_kwargs(cfg, aliases)
    if not cfg.bias_enable:
        # from_specification enables bias when any bias is non-zero; the chip (and from_config)
        # follow bias_enable, so a disabled bias is passed as zeros.
        kwargs.update(bias=[0] * cfg.n_hidden, bias_out=[0] * cfg.n_outputs)
    return import_xylo_imu().XyloSim.from_specification(**kwargs, dt=cfg.dt, output_mode=output_mode)


def _spec_kwargs(cfg: XyloConfig, aliases: list[list[int]]) -> dict[str, Any]:
    h, r = cfg.hidden, cfg.readout
    return dict(
        weights_in=np.asarray(cfg.input_weights, dtype=np.int64),
        weights_out=np.asarray(cfg.readout_weights, dtype=np.int64),
        weights_rec=np.asarray(cfg.hidden_weights, dtype=np.int64),
        dash_mem=[int(v) for v in h.v_mem_decay],
        dash_mem_out=[int(v) for v in r.v_mem_decay],
        dash_syn=[int(v) for v in h.i_syn_decay],
        dash_syn_out=[int(v) for v in r.i_syn_decay],
        threshold=[int(v) for v in h.threshold],
        threshold_out=[int(v) for v in r.threshold],
        bias=[int(v) for v in h.v_mem_bias],
        bias_out=[int(v) for v in r.v_mem_bias],
        weight_shift_in=int(cfg.input_shift),
        weight_shift_rec=int(cfg.hidden_shift),
        weight_shift_out=int(cfg.readout_shift),
        aliases=aliases,
    )


# ---- Rockpool's cycles model, for cross-checking aspen_deploy.backends.cycles ------------------
@functools.cache
def rockpool_cycles_module() -> types.ModuleType:
    """Rockpool's ``syns63300/power_cycles_model.py`` loaded with a stand-in for samna.

    That file needs samna only for two type aliases at import time. It is executed under a
    private module name with a temporary ``samna`` stub in ``sys.modules`` that is removed
    again afterwards, so nothing else ever sees a fake samna. For tests and cross-checks.
    """
    import importlib.util

    _ensure_xylo_package()
    path = os.path.join(sys.modules[_XYLO_PKG].__path__[0], "syns63300", "power_cycles_model.py")
    stub = types.ModuleType("samna")
    stub.xyloImu = types.SimpleNamespace(configuration=types.SimpleNamespace(XyloConfiguration=object))
    stub.xyloAudio3 = types.SimpleNamespace(configuration=types.SimpleNamespace(XyloConfiguration=object))
    previous = sys.modules.get("samna")
    sys.modules["samna"] = stub
    try:
        spec = importlib.util.spec_from_file_location("aspen_deploy._rockpool_power_cycles_model", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        if previous is None:
            del sys.modules["samna"]
        else:
            sys.modules["samna"] = previous
    return mod
