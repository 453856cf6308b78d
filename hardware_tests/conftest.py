"""Fixtures for the tests that need a Xylo IMU HDK; without samna or a board every test is skipped
with one line saying which is missing.

Run them with ``python -m pytest hardware_tests`` (not part of ``pytest tests``). With several
boards connected choose one with ``ASPEN_HDK_BOARD=INDEX|SERIAL``.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np
import pytest

from aspen_deploy.config import NeuronParams, XyloConfig


@lru_cache(maxsize=1)
def hardware_missing() -> str | None:
    """Why the hardware tests cannot run here (one line), or None. samna is only imported when it looks real."""
    from aspen_deploy.devices import DeviceError
    from aspen_deploy.devices.samna_hdk import import_samna, list_boards, samna_status

    status, where = samna_status()
    if status == "missing":
        return "samna is not installed (pip install 'aspen_deploy[hdk]')"
    if status == "stub":
        return f"samna at {where} is the package-index stub, not SynSense's device library"
    try:
        samna = import_samna()
        boards = list_boards(samna)
    except DeviceError as e:
        return str(e)
    except Exception as e:  # samna present but cannot enumerate devices
        return f"samna cannot list devices ({type(e).__name__}: {e})"
    return None if boards else "no Xylo IMU HDK connected"


def pytest_collection_modifyitems(config, items):
    here = os.path.dirname(__file__)
    mine = [it for it in items if str(it.fspath).startswith(here)]
    if not mine:
        return
    reason = hardware_missing()
    if reason:
        for it in mine:
            it.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def hdk():
    """One open HDK for the session (the board is reconfigured by each test)."""
    from aspen_deploy.devices import DeviceError, open_device

    try:
        dev = open_device("hdk", board=os.environ.get("ASPEN_HDK_BOARD"))
    except DeviceError as e:
        pytest.fail(str(e), pytrace=False)
    yield dev
    dev.close()


def tiny_config(seed: int = 0, n_in: int = 15, n_hid: int = 32, n_out: int = 4) -> XyloConfig:
    """A small layered network with moderate activity (positive thresholds, one alias, no bias)."""
    rng = np.random.default_rng(seed)

    def neurons(n: int, thr: int) -> NeuronParams:
        return NeuronParams(threshold=rng.integers(thr // 2, thr * 2, n), v_mem_decay=rng.integers(1, 5, n),
                            i_syn_decay=rng.integers(1, 4, n), v_mem_bias=np.zeros(n, np.int64), alias_target=None)

    hidden = neurons(n_hid, 400)
    hidden.alias_target = [None] * n_hid
    hidden.alias_target[3] = 7
    w_rec = np.triu(rng.integers(-40, 60, (n_hid, n_hid)) * (rng.random((n_hid, n_hid)) < 0.3), 1)
    return XyloConfig(input_weights=rng.integers(-20, 80, (n_in, 16)), input_shift=1, hidden_weights=w_rec,
                      hidden_shift=0, hidden=hidden, readout_weights=rng.integers(-30, 70, (16, n_out)),
                      readout_shift=1, readout=neurons(n_out, 600), bias_enable=False)


def tiny_events(seed: int, n: int, t: int, n_in: int = 15) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 6, (n, t, n_in)) * (rng.random((n, t, n_in)) < 0.3)).astype(np.int64)


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def make_events():
    return tiny_events
