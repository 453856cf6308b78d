"""Quantization and mapping: float network -> XyloConfig -> JSON -> the same chip behaviour."""

import numpy as np
import pytest
import torch

from aspen_deploy.backends import get_backend
from aspen_deploy.config import XyloConfig
from aspen_deploy.drc import DesignRuleError
from aspen_deploy.ir import INPUT, READOUT, ChipNet, Edge, Population
from aspen_deploy.quantize import HIDDEN_THRESHOLD, quantize, readout_vmax
from models.aspen_synnet import AspenSynNet, NetSpec


@pytest.fixture(scope="module")
def net_and_events():
    torch.manual_seed(3)
    net = AspenSynNet(NetSpec(n_out=4))
    with torch.no_grad():
        for neu in net.neurons:
            neu.bias.uniform_(-0.1, 0.1)
        net.readout_bias.uniform_(-0.2, 0.2)
    rng = np.random.default_rng(0)
    events = (rng.random((24, 160, 15)) < 0.25).astype(np.uint8)
    return net, events


def test_mapping_layout(net_and_events):
    net, events = net_and_events
    cfg = quantize(net.to_chipnet(), readout_vmax=readout_vmax(net, events))
    assert cfg.input_weights.shape == (15, 48)  # input expansion: the first layer only
    assert cfg.hidden_weights.shape == (144, 144)
    assert cfg.readout_weights.shape == (48, 4)  # readout rows = the last 48 hidden neurons
    blocks = cfg.hidden_weights != 0
    assert not blocks[:, :48].any()  # nothing feeds layer 1 from the hidden matrix
    assert not blocks[48:96, 48:96].any() and not blocks[96:, :].any()  # feed-forward only
    assert blocks[:48, 48:96].any() and blocks[48:96, 96:].any()
    assert set(cfg.hidden.threshold.tolist()) == {HIDDEN_THRESHOLD}
    assert np.all(cfg.readout.threshold == 32767)  # the readout does not spike
    assert cfg.bias_enable and np.any(cfg.hidden.v_mem_bias != 0)  # hidden biases are kept
    # the readout bias uses the readout's own scale, not the hidden one
    g_out = cfg.metadata["readout_scale"]
    np.testing.assert_allclose(cfg.readout.v_mem_bias, np.round(net.readout_bias.detach().numpy() * g_out), atol=0.5)


def test_json_round_trip_gives_same_simulation(net_and_events, tmp_path):
    net, events = net_and_events
    cfg = quantize(net.to_chipnet(), readout_vmax=readout_vmax(net, events))
    loaded = XyloConfig.load(cfg.save(tmp_path / "xylo_config.json"))
    a, b = get_backend("fast"), get_backend("fast")
    a.load(cfg)
    b.load(loaded)
    ra, rb = a.run(events), b.run(events)
    for k in ("output_spikes", "readout_vmem", "hidden_spike_counts", "cycles_per_step", "prediction"):
        np.testing.assert_array_equal(getattr(ra, k), getattr(rb, k), err_msg=k)


@pytest.mark.parametrize("theta", [0.8, 1.0, 1.5])
def test_chip_follows_float_network(net_and_events, theta):
    """Quantized integers on the bit-exact simulator track the float model at several thresholds."""
    net, events = net_and_events
    cfg = quantize(net.to_chipnet(), readout_vmax=readout_vmax(net, events))
    be = get_backend("fast")
    be.load(cfg)
    be.set_threshold_scale(theta)
    r = be.run(events)
    net.set_threshold(torch.tensor(theta))
    with torch.no_grad():
        logits = net(torch.as_tensor(events, dtype=torch.float32))[0]
    float_spikes = np.concatenate([s.sum(1).numpy() for s in net.last_hidden_spikes], axis=1)
    net.set_threshold(1.0)
    assert float_spikes.sum() > 1000  # the comparison is not between two silent networks
    rel = abs(r.hidden_spike_counts.sum() - float_spikes.sum()) / float_spikes.sum()
    assert rel < 0.05, rel
    assert np.mean(r.prediction == logits.argmax(-1).numpy()) >= 0.85


def test_refuses_network_larger_than_chip():
    pops = [Population("big", 520, 2, 3)]
    edges = [Edge(INPUT, 0, np.ones((15, 520)) * 0.1), Edge(0, READOUT, np.ones((520, 2)) * 0.1)]
    net = ChipNet(15, pops, edges, Population("readout", 2, 1, 2))
    with pytest.raises(DesignRuleError) as e:
        quantize(net)
    rules = {v.rule for v in e.value.violations}
    assert "hidden-neurons" in rules and "input-expansion" in rules and "output-expansion" in rules
