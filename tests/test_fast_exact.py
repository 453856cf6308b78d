"""The fast backend against xylosim, element by element.

Part 1: 240 random configurations (tests/helpers_random_config.py) with random inputs,
including counts above 15: every output spike, readout membrane value, hidden spike count
and cycle count must be equal. Part 2: one small hand-built network per rule of the integer
semantics (aspen_deploy/backends/fast.py), with the expected numbers worked out by hand,
checked on both backends; these pin down the rules the random part could hit only rarely.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers_random_config import random_config, random_events

from aspen_deploy.backends.fast import FastBackend, reciprocal_up
from aspen_deploy.backends.xylosim import XyloSimBackend
from aspen_deploy.config import NeuronParams, XyloConfig

N_RANDOM = 240
FIELDS = ("output_spikes", "readout_vmem", "hidden_spike_counts", "cycles_per_step", "prediction")


def _run_both(cfg: XyloConfig, x: np.ndarray):
    ref, fast = XyloSimBackend(), FastBackend()
    ref.load(cfg)
    fast.load(cfg)
    return ref.run(x), fast.run(x)


def _assert_equal(ref, got, what: str) -> None:
    for f in FIELDS:
        a, b = getattr(ref, f), getattr(got, f)
        assert a.shape == b.shape, f"{what}: {f} shape {b.shape} != xylosim {a.shape}"
        if not np.array_equal(a, b):
            idx = tuple(int(i) for i in np.argwhere(a != b)[0])
            n_bad = int(np.count_nonzero(a != b))
            pytest.fail(f"{what}: {f} differs in {n_bad} places, first at {idx}: xylosim {a[idx]}, fast {b[idx]}")


def _features(cfg: XyloConfig, x: np.ndarray) -> set[str]:
    f = {f"regime:{cfg.metadata['regime']}", f"bias_enable:{cfg.bias_enable}"}
    aliases = [a for a in (cfg.hidden.alias_target or []) if a is not None]
    f |= {"alias"} if aliases else set()
    f |= {"alias0"} if 0 in aliases else set()
    f |= {"thr<=0"} if (cfg.hidden.threshold <= 0).any() else set()
    f |= {"thr<=3"} if ((cfg.hidden.threshold > 0) & (cfg.hidden.threshold <= 3)).any() else set()
    f |= {"thr>=8000"} if (cfg.hidden.threshold >= 8000).any() else set()
    f |= {"dash0"} if (cfg.hidden.v_mem_decay == 0).any() else set()
    f |= {"dash15"} if (cfg.hidden.i_syn_decay == 15).any() else set()
    f |= {"shift7"} if 7 in (cfg.input_shift, cfg.hidden_shift, cfg.readout_shift) else set()
    f |= {"recurrent"} if np.tril(cfg.hidden_weights).any() else set()
    f |= {"count>15"} if (x > 15).any() else set()
    return f


def _case(i: int) -> tuple[XyloConfig, np.ndarray]:
    rng = np.random.default_rng(10_000 + i)
    cfg = random_config(rng)
    return cfg, random_events(rng, cfg.n_inputs, n=2, t=int(rng.integers(20, 41)))


def test_random_cases_cover_the_corner_cases():
    seen: set[str] = set()
    for i in range(N_RANDOM):
        seen |= _features(*_case(i))
    wanted = {
        "regime:gentle", "regime:busy", "regime:extreme", "bias_enable:True", "bias_enable:False", "alias",
        "alias0", "thr<=0", "thr<=3", "thr>=8000", "dash0", "dash15", "shift7", "recurrent", "count>15",
    }  # fmt: skip
    assert wanted <= seen, f"the random cases never exercise {sorted(wanted - seen)}"


@pytest.mark.parametrize("i", range(N_RANDOM))
def test_random_config_matches_xylosim(i: int):
    cfg, x = _case(i)
    ref, got = _run_both(cfg, x)
    assert ref.output_spikes.shape == (2, x.shape[1], cfg.n_outputs)
    _assert_equal(ref, got, f"case {i} ({cfg.metadata['regime']}, {cfg.n_inputs}-{cfg.n_hidden}-{cfg.n_outputs})")


# ---- hand-built probes, one rule each ------------------------------------------------------
def _pop(n: int, thr, dash_mem=15, dash_syn=15, bias=0, alias=None) -> NeuronParams:
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()  # noqa: E731
    return NeuronParams(full(thr), full(dash_mem), full(dash_syn), full(bias), alias)


def _probe(hidden: NeuronParams, readout: NeuronParams, w_in, w_rec, w_out, shifts=(0, 0, 0), bias_enable=False):
    n_hid = len(hidden)
    if hidden.alias_target is None:
        hidden.alias_target = [None] * n_hid
    return XyloConfig(
        input_weights=np.atleast_2d(np.asarray(w_in, dtype=np.int64)),
        input_shift=shifts[0],
        hidden_weights=np.asarray(w_rec, dtype=np.int64).reshape(n_hid, n_hid),
        hidden_shift=shifts[1],
        hidden=hidden,
        readout_weights=np.atleast_2d(np.asarray(w_out, dtype=np.int64)),
        readout_shift=shifts[2],
        readout=readout,
        bias_enable=bias_enable,
    )


def _pulse(t: int, count: int = 1, n_in: int = 1) -> np.ndarray:
    x = np.zeros((1, t, n_in), np.int64)
    x[0, 0, 0] = count
    return x


def _relay(thr: int = 99, dash_mem: int = 0) -> NeuronParams:
    """A hidden neuron that spikes once at t = 0 on an input of weight 100: isyn 99 (decay by 1),
    vmem = isyn each step (dash_mem 0), below threshold from t = 1 on."""
    return _pop(1, thr, dash_mem=dash_mem, dash_syn=15)


def test_decay_is_a_shift_but_at_least_one_towards_zero_and_readout_hears_one_step_later():
    # readout: isyn 10 -> decay(., 1) -> 5, 3, 2, 1, 0 ; vmem with dash 15 loses exactly 1 per step
    cfg = _probe(_relay(), _pop(1, 30000, dash_mem=15, dash_syn=1), [[100]], [[0]], [[10]])
    ref, got = _run_both(cfg, _pulse(9))
    expected = [0, 5, 7, 8, 8, 7, 6, 5, 4]
    assert ref.readout_vmem[0, :, 0].tolist() == expected
    assert ref.hidden_spike_counts.tolist() == [[1]]
    _assert_equal(ref, got, "decay probe")


def test_hidden_neuron_fires_at_most_31_spikes_with_subtractive_reset():
    # relay threshold 1, vmem 99 -> 31 spikes, vmem 68; readout gets 31 x w at t = 1
    cfg = _probe(_pop(1, 1, dash_mem=15, dash_syn=15), _pop(1, 30000), [[100]], [[0]], [[1]])
    ref, got = _run_both(cfg, _pulse(3))
    assert ref.readout_vmem[0, 1, 0] == 31 - 1  # 31 spikes of weight 1, then one decay step
    assert ref.hidden_spike_counts[0, 0] >= 31
    _assert_equal(ref, got, "31-spike probe")


def test_readout_fires_at_most_once_per_step():
    cfg = _probe(_pop(1, 1), _pop(1, 10, dash_syn=15), [[100]], [[0]], [[100]])
    ref, got = _run_both(cfg, _pulse(6))
    assert ref.output_spikes[0, 1:, 0].tolist() == [1] * 5
    assert (ref.readout_vmem[0, 1:, 0] > 10).all()  # far above threshold, one subtraction per step
    _assert_equal(ref, got, "readout cap probe")


@pytest.mark.parametrize("thr,per_step", [(0, 31), (-1, 31), (-20000, 2)])
def test_threshold_at_or_below_zero_spikes_until_the_membrane_wraps(thr: int, per_step: int):
    # thr = -20000 from vmem 0: 0 -> 20000 -> wraps to -25536 < thr after 2 spikes
    cfg = _probe(_pop(1, thr, dash_mem=0), _pop(1, 30000), [[0]], [[0]], [[0]])
    ref, got = _run_both(cfg, np.zeros((1, 5, 1), np.int64))
    assert ref.hidden_spike_counts.tolist() == [[5 * per_step]]
    _assert_equal(ref, got, f"threshold {thr} probe")


def test_input_counts_are_clipped_at_15():
    # input weight 10, threshold 9: count 14 -> vmem 139 -> 15 spikes, count 15 -> 149 -> 16
    cfg = _probe(_pop(1, 9, dash_mem=15, dash_syn=15), _pop(1, 30000), [[10]], [[0]], [[1]])
    counts = {c: _run_both(cfg, _pulse(3, c)) for c in (14, 15, 200)}
    ref15, ref200, ref14 = counts[15][0], counts[200][0], counts[14][0]
    assert np.array_equal(ref15.readout_vmem, ref200.readout_vmem)
    assert not np.array_equal(ref15.readout_vmem, ref14.readout_vmem)
    for c, (ref, got) in counts.items():
        _assert_equal(ref, got, f"input count {c}")


def test_hidden_to_hidden_adds_one_step():
    # input -> h0 (t = 0) -> h1 (t = 1) -> readout (t = 2)
    hid = _pop(2, 99, dash_mem=0, dash_syn=15)
    cfg = _probe(hid, _pop(1, 30000, dash_syn=15), [[100, 0]], [[0, 100], [0, 0]], [[10]])
    ref, got = _run_both(cfg, _pulse(4))
    assert ref.readout_vmem[0, :, 0].tolist()[:3] == [0, 0, 9]
    _assert_equal(ref, got, "latency probe")


@pytest.mark.parametrize("bias_enable", [False, True])
def test_bias_only_counts_when_enabled(bias_enable: bool):
    cfg = _probe(_pop(1, 30000), _pop(1, 30000, dash_mem=15, bias=7), [[0]], [[0]], [[0]], bias_enable=bias_enable)
    ref, got = _run_both(cfg, np.zeros((1, 4, 1), np.int64))
    assert ref.readout_vmem[0, :, 0].tolist() == ([7, 13, 19, 25] if bias_enable else [0, 0, 0, 0])
    _assert_equal(ref, got, "bias probe")


@pytest.mark.parametrize("order,expected_isyn", [("plus_first", 16383 - 1), ("minus_first", 32767 - 1)])
def test_saturating_adds_follow_the_presynaptic_order(order: str, expected_isyn: int):
    # +31 x 16256 then -16384 saturates at 32767 first (-> 16383); the other order ends at 32767
    w_out = [[127], [-128]] if order == "plus_first" else [[-128], [127]]
    counts_in = [[100, 0], [0, 100]]  # both relays fire at t = 0
    hid = _pop(2, [1, 99] if order == "plus_first" else [99, 1], dash_mem=0, dash_syn=15)
    cfg = _probe(hid, _pop(1, 32767, dash_mem=0, dash_syn=15), counts_in, np.zeros((2, 2)), w_out, shifts=(0, 0, 7))
    x = np.zeros((1, 3, 2), np.int64)
    x[0, 0] = 1
    ref, got = _run_both(cfg, x)
    assert ref.readout_vmem[0, 1, 0] == expected_isyn  # dash_mem 0: vmem = isyn after its decay
    _assert_equal(ref, got, f"saturation order probe ({order})")


def test_membrane_at_minus_32768_with_dash_zero_sticks():
    # -decay(-32768, 0) = 32768 wraps to -32768 in int16, so with a negative bias the readout
    # membrane cannot leave -32768 (without the wrap it would recover to about -28000)
    relay = _pop(1, 1000, dash_mem=0, dash_syn=1)
    readout = _pop(1, 32767, dash_mem=0, dash_syn=1, bias=-20000)
    cfg = _probe(relay, readout, [[127]], [[0]], [[-128]], shifts=(7, 0, 7), bias_enable=True)
    ref, got = _run_both(cfg, _pulse(12))
    assert ref.readout_vmem[0, 1:, 0].tolist() == [-32768] * 11
    _assert_equal(ref, got, "vmem wrap probe")


@pytest.mark.parametrize("target", [0, 1])
def test_alias_copies_spikes_to_the_target_including_neuron_0(target: int):
    # the readout listens to the alias target only; the source is the one that gets input
    source = 1 - target
    w_in = [[100, 0]] if source == 0 else [[0, 100]]
    hid = _pop(2, 99, dash_mem=0, dash_syn=15, alias=[None, None])
    hid.alias_target[source] = target
    w_out = np.zeros((2, 1), np.int64)
    w_out[target, 0] = 10
    cfg = _probe(hid, _pop(1, 30000, dash_syn=15), w_in, np.zeros((2, 2)), w_out)
    ref, got = _run_both(cfg, _pulse(3))
    assert ref.readout_vmem[0, 1, 0] == 9  # the copied spike arrived
    assert ref.hidden_spike_counts[0].tolist() == [1, 1]
    _assert_equal(ref, got, f"alias {source}->{target} probe")


def test_reciprocal_up_gives_the_exact_quotient_where_nearest_rounding_does_not():
    """The neuron pass divides by multiplying with `reciprocal_up` (all 2**30 pairs: scripts/check_reciprocal.py)."""
    rng = np.random.default_rng(5)
    thr = np.unique(np.concatenate([[1, 2, 3, 7, 255, 4095, 4096, 4097, 32766, 32767], rng.integers(1, 32768, 300)]))
    v = np.arange(32768, dtype=np.float32)[:, None]
    exact = np.arange(32768)[:, None] // thr[None, :]
    assert np.array_equal(np.floor(v * reciprocal_up(thr)[None, :]).astype(np.int64), exact)
    nearest = np.floor(v * (1.0 / thr).astype(np.float32)[None, :]).astype(np.int64)
    assert (nearest != exact).any()  # the rounding direction is what makes it exact


@pytest.mark.parametrize("n_hidden", [1, 31, 33, 90, 130])
def test_padding_and_several_spike_mask_words_change_nothing(n_hidden: int):
    """Both populations are padded to whole 8-lane vectors and weight rows widened to 32 columns (the pads never
    show), and spikes are found through 64-neuron masks (90 and 130 hidden need two and three)."""
    rng = np.random.default_rng(n_hidden)
    cfg = random_config(rng, max_hidden=n_hidden, regime="busy")
    while cfg.n_hidden != n_hidden:
        cfg = random_config(rng, max_hidden=n_hidden, regime="busy")
    ref, fast = _run_both(cfg, random_events(rng, cfg.n_inputs, 3, 20))
    _assert_equal(ref, fast, f"{n_hidden} hidden")
    assert n_hidden <= 64 or fast.hidden_spike_counts[:, 64:].sum() > 0  # the later mask words were used
    assert fast.hidden_spike_counts.shape == (3, n_hidden) and fast.output_spikes.shape[-1] == cfg.n_outputs


def test_windows_in_lockstep_groups_equal_windows_run_alone():
    """Windows are stepped in groups (`WINDOWS_PER_GROUP`); 9 windows span full groups and a partial one."""
    rng = np.random.default_rng(9)
    cfg = random_config(rng, max_hidden=70, regime="busy")
    x = random_events(rng, cfg.n_inputs, 9, 25)
    fast = FastBackend()
    fast.load(cfg)
    together = fast.run(x)
    for b in range(9):
        _assert_equal(fast.run(x[b : b + 1]), _take(together, b), f"window {b}")
    assert together.hidden_spike_counts.sum() > 0


def _take(r, b: int):
    return type(r)(**{f: getattr(r, f)[b : b + 1] for f in FIELDS})
