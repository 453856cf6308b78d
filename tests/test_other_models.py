"""Other papers' models on Xylo: mpsl, mps, stc_lif, s2tdpt (training, conversion, refusals).

Tiny networks on a slice of the synthetic data (short windows) keep this file fast.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from aspen_deploy.backends import get_backend
from aspen_deploy.drc import RULES, DesignRuleError, check
from aspen_deploy.quantize import quantize, readout_vmax
from aspen_deploy.train import TrainSettings, evaluate, train
from models import TRAINABLE_MODELS, build_model
from models.chipnet_model import ChipNetModel, evaluate_logits

T_STEPS = 96

SPECS = {
    "mpsl": {"hidden": [12, 12], "n_out": 6},
    "mps": {"hidden": [12, 12], "n_out": 6},
    "stc_lif": {"hidden": [12, 12], "n_out": 6, "groups": 3},
    "s2tdpt": {"hidden": [12], "n_out": 6, "n_tokens": 4},
}


@pytest.fixture(scope="module")
def data(small_event_data):
    return small_event_data(32, 12, 12, T_STEPS)


def events(n=4, t=T_STEPS, seed=0, p=0.25):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, t, 15, generator=g) < p).float() * torch.randint(1, 4, (n, t, 15), generator=g)


# ---- every model: trains with ASPEN sampling, reloads, threshold is a knob ----------------------


@pytest.mark.parametrize("name", [n for n in TRAINABLE_MODELS if n != "aspen_synnet"])
def test_model_trains_with_aspen_sampling_and_reloads(name, data, tmp_path):
    from aspen_deploy.runs import load_run

    torch.manual_seed(0)
    net = build_model(name, SPECS[name])
    before = copy.deepcopy(net.state_dict())
    settings = TrainSettings(sampler="uniform:1.0,1.5", epochs=1, batch_size=16, model=name,
                             net=net.spec.to_dict(), data=data.spec)
    metrics = train(net, data, settings, tmp_path / name)
    assert 0.0 <= metrics["float_test_accuracy"] <= 1.0
    assert metrics["float_test_hidden_spikes_per_window"] > 0
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("w") for k in changed), "training must move the weights"
    run = load_run(tmp_path / name)  # through the registry, from settings.json + checkpoint.pt
    x = torch.as_tensor(data.test.x, dtype=torch.float32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(run.net(x)[0], net(x)[0])


@pytest.mark.parametrize("name", ["mpsl", "mps", "stc_lif", "s2tdpt"])
def test_threshold_trades_spikes(name):
    torch.manual_seed(1)
    net = build_model(name, SPECS[name])
    net.eval()
    counts = [evaluate_logits(net, events(t=64).numpy(), th)[1] for th in (0.6, 1.0, 2.0)]
    assert counts[0] > counts[1] > counts[2] > 0


def test_unknown_spec_fields_are_refused():
    with pytest.raises(ValueError, match="unknown"):
        build_model("mps", {"hidden": [8], "smoothing": 0.3})
    with pytest.raises(ValueError, match="reset"):
        build_model("mps", {"reset": "hard"})
    with pytest.raises(ValueError, match="divide"):
        build_model("stc_lif", {"hidden": [10], "groups": 4})


# ---- mpsl -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mpsl_trained(data, tmp_path_factory):
    torch.manual_seed(2)
    net = build_model("mpsl", SPECS["mpsl"])
    settings = TrainSettings(sampler="uniform:1.0,1.5", epochs=1, batch_size=16, model="mpsl",
                             net=net.spec.to_dict())
    train(net, data, settings, tmp_path_factory.mktemp("mpsl"))
    return net


def test_mpsl_plasticity_acts_in_the_forward_pass(mpsl_trained):
    net = copy.deepcopy(mpsl_trained)
    net.train()
    w2, w3 = net.w2_0.clone(), net.w3_0.clone()
    assert float(w2.abs().sum()) > 0, "training must leave a Hebbian W2"
    net(events(8))
    assert not torch.equal(net.w2_0, w2), "a training pass updates W2 (Hebbian)"
    assert not torch.equal(net.w3_0, w3), "and W3 (self-backpropagation of dW2)"
    net.eval()  # evaluation: each window has its own W2, the stored one stays
    w2 = net.w2_0.clone()
    with torch.no_grad():
        net(events(3))
    assert torch.equal(net.w2_0, w2)
    # the coefficients are learned: they get gradients
    net.train()
    net(events(4))[0].sum().backward()
    assert all(float(net.lam(k).grad.abs().sum()) > 0 for k in range(net.n_layers))


def test_mpsl_merged_network_is_exact_in_float_and_on_chip(mpsl_trained, data):
    net = copy.deepcopy(mpsl_trained)
    net.eval()
    net.mode = "merged"
    merged = net.merged_model()
    merged.eval()
    x, y = data.test.x, data.test.y
    a = evaluate(net, x, y)
    b = evaluate(merged, x, y)
    assert a == b  # same accuracy and the same hidden spikes
    la, _ = evaluate_logits(net, x)
    lb, _ = evaluate_logits(merged, x)
    np.testing.assert_array_equal(la, lb)
    # the plastic model is a different network: its outputs differ from the merged one
    net.mode = "plastic"
    assert not np.array_equal(evaluate_logits(net, x)[0], la)
    net.mode = "merged"

    vmax = readout_vmax(net, data.train.x[:8])
    assert vmax == readout_vmax(merged, data.train.x[:8])
    cfg = quantize(net.to_chipnet(), readout_vmax=vmax)
    cfg_ref = quantize(merged.to_chipnet(), readout_vmax=vmax)
    assert check(cfg) == []
    for field in ("input_weights", "hidden_weights", "readout_weights"):
        np.testing.assert_array_equal(getattr(cfg, field), getattr(cfg_ref, field))
    assert net.to_chipnet().metadata["conversion"]["status"] == "exact"
    ev = data.test.x[:4]
    for name in ("fast", "xylosim"):
        be, ref = get_backend(name), get_backend(name)
        be.load(cfg)
        ref.load(cfg_ref)
        r, r_ref = be.run(ev), ref.run(ev)
        np.testing.assert_array_equal(r.readout_vmem, r_ref.readout_vmem)
        np.testing.assert_array_equal(r.hidden_spike_counts, r_ref.hidden_spike_counts)
        assert r.hidden_spike_counts.sum() > 0


# ---- mps --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", ["membrane", "smoothed"])
def test_mps_scan_matches_stepwise_reference(reset):
    net = build_model("mps", {"hidden": [6], "reset": reset, "alpha_init": 0.6})
    g = torch.Generator().manual_seed(3)
    cur = (torch.randn(3, 50, 6, generator=g) * 1.5).requires_grad_(True)
    bias = torch.tensor([0.0, 0.1, -0.2, 0.3, 0.05, 0.0], requires_grad=True)
    alpha = torch.tensor(0.6, requires_grad=True)
    theta = torch.tensor([[0.8], [1.0], [1.3]])
    w = torch.linspace(-1, 1, 6)
    s_ref = net._layer_reference(cur, alpha, bias, theta)
    (s_ref * w).sum().backward()
    ref = [cur.grad.clone(), bias.grad.clone(), alpha.grad.clone()]
    cur.grad = bias.grad = alpha.grad = None
    s = net._layer(cur, alpha, bias, theta)
    (s * w).sum().backward()
    assert torch.equal(s, s_ref) and s.sum() > 0
    for got, want in zip((cur.grad, bias.grad, alpha.grad), ref):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_mps_smoothed_reset_converts_exactly_and_membrane_reset_is_flagged():
    torch.manual_seed(4)
    spec = {"hidden": [10, 10], "n_out": 3, "reset": "smoothed", "alpha_init": 0.6, "alpha_bitshift": True}
    net = build_model("mps", spec)
    x = events(4, 80)
    net.train()
    net(x)[0].sum().backward()
    assert float(net.alpha_logit0.grad.abs()) > 0  # the latent alpha learns through the rounding
    net.eval()
    assert float(net.alpha(0)) == 0.5  # 0.6 -> the nearest bit shift, 1 - 2**-1
    cn = net.to_chipnet()
    assert cn.populations[0].dash_syn == net.dash_mem  # isyn <- U, with U's leak
    assert cn.populations[0].dash_mem == 1 and cn.populations[0].threshold == pytest.approx(2.0)  # alpha 0.5
    assert cn.metadata["conversion"]["status"] == "exact"
    chipf = ChipNetModel.from_chipnet(cn)
    with torch.no_grad():
        la, lb = net(x)[0], chipf(x)[0]
    sa = torch.cat(net.last_hidden_spikes, -1)
    sb = torch.cat(chipf.last_hidden_spikes, -1)
    assert sa.sum() > 0
    assert (sa == sb).float().mean() > 0.999  # identical up to float rounding at threshold crossings
    torch.testing.assert_close(la, lb, atol=1e-3, rtol=1e-3)

    paper = build_model("mps", {"hidden": [10, 10], "n_out": 3})
    meta = paper.to_chipnet().metadata["conversion"]
    assert meta["status"] == "approximate" and any("reset lands" in n for n in meta["notes"])
    with torch.no_grad():
        paper.alpha_logit0.fill_(0.3)  # alpha 0.574 is no bit-shift decay: rounded, and said so
    assert any("alpha 0.574" in n for n in paper.to_chipnet().metadata["conversion"]["notes"])


def test_mps_tasg_is_added_to_the_training_loss_only():
    from models.mps import tasg_loss

    torch.manual_seed(5)
    net = build_model("mps", {"hidden": [8], "n_out": 3, "tasg_weight": 0.5})
    x, y = events(4, 60), torch.tensor([0, 1, 2, 0])
    net.train()
    logits = net(x)[0]
    torch.nn.functional.cross_entropy(logits, y).backward()
    g_injected = net.w0.grad.clone()
    assert net.last_tasg_loss is not None and float(net.last_tasg_loss) > 0
    for p in net.parameters().astorch():  # Rockpool's parameters() is a dict: no zero_grad()
        p.grad = None
    # the same loss written out: CE + weight * KL over the readout steps
    v = net.readout_membrane(x)
    t0 = int(v.shape[1] * 0.25)
    logits2 = v[:, t0:].mean(1) / net.readout_gain
    loss = torch.nn.functional.cross_entropy(logits2, y) + 0.5 * tasg_loss(v[:, t0:] / net.readout_gain)
    loss.backward()
    torch.testing.assert_close(g_injected, net.w0.grad, atol=1e-5, rtol=1e-4)
    net.eval()
    with torch.no_grad():
        net(x)
    assert net.last_tasg_loss is None


def test_mps_exports_checks_and_simulates():
    torch.manual_seed(6)
    net = build_model("mps", {"hidden": [10, 10], "n_out": 3})
    net.eval()
    x = events(3, 64)
    cfg = quantize(net.to_chipnet(), readout_vmax=readout_vmax(net, x.numpy()))
    assert check(cfg) == []
    r = get_backend("fast")
    r.load(cfg)
    out = r.run(x.numpy().astype(np.int64))
    assert out.hidden_spike_counts.sum() > 0 and out.prediction.shape == (3,)


# ---- stc_lif ----------------------------------------------------------------------------------


def test_stc_scan_matches_stepwise_reference():
    torch.manual_seed(7)
    net = build_model("stc_lif", {"hidden": [8], "groups": 2})
    with torch.no_grad():
        for p in (net.a_beta0, net.c_gamma0, net.e_gamma0):
            p.uniform_(-1, 1)
    cur = (torch.randn(3, 50, 8) * 1.2).requires_grad_(True)
    params = [cur, net.b0, net.wg0, net.a_beta0, net.c_gamma0, net.e_gamma0]
    theta = torch.tensor([[0.8], [1.0], [1.3]])
    w = torch.linspace(-1, 1, 8)
    s_ref = net._layer_reference(0, cur, theta)
    (s_ref * w).sum().backward()
    ref = [p.grad.clone() for p in params]
    for p in params:
        p.grad = None
    s = net._layer(0, cur, theta)
    (s * w).sum().backward()
    assert torch.equal(s, s_ref) and s.sum() > 0
    for p, want in zip(params, ref):
        torch.testing.assert_close(p.grad, want, atol=1e-3, rtol=1e-4)


def test_stc_lif_is_refused_by_default_with_every_reason():
    net = build_model("stc_lif", SPECS["stc_lif"])
    with pytest.raises(DesignRuleError) as e:
        net.to_chipnet()
    vs = e.value.violations
    assert len(vs) == 2 * 2  # leak and within-layer gain, per layer
    assert {v.rule for v in vs} == {"unsupported"}
    assert {v.where for v in vs} == {"stc_lif layer hidden0", "stc_lif layer hidden1"}
    assert any("leak" in v.needed for v in vs) and any("gamma" in v.needed for v in vs)
    assert all("\n" not in v.message() and "--approximate" in v.message() for v in vs)


def test_stc_lif_approximation_is_exact_when_the_factors_are_constant():
    """With beta and gamma held constant (no spike dependence) the fixed-leak conversion is exact."""
    torch.manual_seed(8)
    net = build_model("stc_lif", {"hidden": [8, 8], "n_out": 3, "groups": 2, "tau_mem_s": 0.04})
    with torch.no_grad():
        for k in range(2):
            getattr(net, f"a_beta{k}").zero_()  # beta = alpha_mem always
            getattr(net, f"e_gamma{k}").zero_()  # gamma = tanh(c) always
            getattr(net, f"c_gamma{k}").uniform_(-1, 1)
            getattr(net, f"wg{k}").mul_(3.0)
            getattr(net, f"beta_mean{k}").fill_(net.alpha_mem)
            setattr(net, f"gamma_mean{k}", torch.tanh(getattr(net, f"c_gamma{k}")).detach().clone())
    net.eval()
    cn = net.to_chipnet(approximate=True)
    rec = [e for e in cn.edges if e.src == e.dst]
    assert len(rec) == 2 and all(np.count_nonzero(e.weight) == 8 * 4 for e in rec)  # two groups of 4
    fixed = ChipNetModel.from_chipnet(cn)
    x = events(4, 70)
    with torch.no_grad():
        la, lb = net(x)[0], fixed(x)[0]
    sa, sb = torch.cat(net.last_hidden_spikes, -1), torch.cat(fixed.last_hidden_spikes, -1)
    assert sa.sum() > 0 and (sa == sb).float().mean() > 0.999
    torch.testing.assert_close(la, lb, atol=1e-3, rtol=1e-3)


def test_stc_lif_approximate_export_checks_simulates_and_reports(data):
    from models.stc_lif import approximation_report

    torch.manual_seed(9)
    net = build_model("stc_lif", SPECS["stc_lif"])
    net.train()
    net(torch.as_tensor(data.train.x[:8], dtype=torch.float32))  # running means of beta and gamma
    net.eval()
    cn = net.to_chipnet(approximate=True)
    assert cn.metadata["conversion"]["status"] == "approximate"
    cfg = quantize(cn, readout_vmax=readout_vmax(net, data.train.x[:8]))
    assert check(cfg) == [] and np.count_nonzero(cfg.hidden_weights) > 0
    be = get_backend("fast")
    be.load(cfg)
    assert be.run(data.test.x[:3]).hidden_spike_counts.sum() > 0
    rep = approximation_report(net, data.test.x, data.test.y)
    assert rep["accuracy_change"] == pytest.approx(rep["fixed_accuracy"] - rep["dynamic_accuracy"])
    assert 0 <= rep["prediction_agreement"] <= 1 and rep["windows"] == len(data.test.y)


# ---- s2tdpt -----------------------------------------------------------------------------------


def test_s2tdpt_is_refused_with_reasons_and_budgets():
    net = build_model("s2tdpt", {})  # the default size, the one the reproduction trains
    with pytest.raises(DesignRuleError) as e:
        net.to_chipnet()
    vs = e.value.violations
    rules = [v.rule for v in vs]
    assert rules.count("unsupported") == 3
    assert "hidden-neurons" in rules and "recurrent-weights" in rules
    budget = net.token_budget()
    hid = next(v for v in vs if v.rule == "hidden-neurons")
    assert str(budget["hidden_neurons"]) in hid.needed and budget["hidden_neurons"] > hid.limit
    assert all(v.rule in RULES and "\n" not in v.message() for v in vs)
    with pytest.raises(DesignRuleError):
        net.to_chipnet(approximate=True)


def test_s2tdpt_attention_depends_on_spike_timing():
    """Same spike counts per token, different timing -> different attention output."""
    torch.manual_seed(10)
    net = build_model("s2tdpt", {"hidden": [4], "n_tokens": 2})
    d = torch.tensor([0.0, 1.0])
    assert float(net._stdp_kernel(d)[0]) == pytest.approx(1.0)  # key with query: full potentiation
    assert float(net._stdp_kernel(torch.tensor([-5.0]))[0]) < 0 < float(net._stdp_kernel(torch.tensor([5.0]))[0])
    s1 = torch.zeros(1, 8, 4)
    s2 = torch.zeros(1, 8, 4)
    s1[0, 0, 0] = s2[0, 3, 0] = 1  # one spike in token 0, early vs late
    (c1, t1), (c2, t2) = net._tokens(s1), net._tokens(s2)
    assert torch.equal(c1, c2) and not torch.equal(t1, t2)
