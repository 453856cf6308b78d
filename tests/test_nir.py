"""NIR import/export: hand-written graphs, refusals, the continuous-time mapping, round trips, snnTorch."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from aspen_deploy import chip
from aspen_deploy.backends import get_backend
from aspen_deploy.drc import DesignRuleError, check
from aspen_deploy.ir import INPUT, READOUT
from aspen_deploy.nir_io import (NirFormatError, export_nir, graph_to_chipnet, import_nir, import_notes, read_graph,
                                 write_graph)
from aspen_deploy.quantize import quantize, readout_vmax
from aspen_deploy.runs import load_run
from models.chipnet_model import ChipNetModel, evaluate_logits

DT = chip.DT_S
T_STEPS = 96


@pytest.fixture(scope="module")
def data(small_event_data):
    return small_event_data(16, 8, 12, T_STEPS)


def cuba_lif(n, tau_syn=0.02, tau_mem=0.04, thr=1.0, r=None, w_in=None, v_leak=0.0, v_reset=0.0):
    """A CubaLIF with snnTorch's per-step convention by default (r = tau_mem/dt, w_in = tau_syn/dt)."""
    f = lambda v: np.full(n, float(v)) if np.ndim(v) == 0 else np.asarray(v, dtype=float)  # noqa: E731
    return nir.CubaLIF(tau_syn=f(tau_syn), tau_mem=f(tau_mem), r=f(tau_mem / DT if r is None else r),
                       v_leak=f(v_leak), v_threshold=f(thr), v_reset=f(v_reset),
                       w_in=f(tau_syn / DT if w_in is None else w_in))


def cuba_li(n, tau_syn=0.01, tau_mem=0.02):
    f = lambda v: np.full(n, float(v))  # noqa: E731
    return nir.CubaLI(tau_syn=f(tau_syn), tau_mem=f(tau_mem), r=f(tau_mem / DT), v_leak=f(0.0), w_in=f(tau_syn / DT))


def two_layer_graph(h1=24, h2=24, n_out=6, seed=0, **lif_kw):
    """Input(15) -> Linear -> CubaLIF -> Linear -> CubaLIF -> Linear -> CubaLI(6) -> Output."""
    rng = np.random.default_rng(seed)
    w = lambda o, i: rng.uniform(-1, 1, (o, i)) * (3.0 / i) ** 0.5  # noqa: E731
    nodes = {"input": nir.Input(input_type=np.array([15])), "fc1": nir.Linear(weight=w(h1, 15)),
             "lif1": cuba_lif(h1, **lif_kw), "fc2": nir.Linear(weight=w(h2, h1)), "lif2": cuba_lif(h2, **lif_kw),
             "fc3": nir.Linear(weight=w(n_out, h2)), "li": cuba_li(n_out),
             "output": nir.Output(output_type=np.array([n_out]))}
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "fc3"), ("fc3", "li"),
             ("li", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


def rules_and_places(err: DesignRuleError) -> list[tuple[str, str]]:
    return [(v.rule, v.where) for v in err.violations]


# ---- hand-written graphs ---------------------------------------------------------------------


def test_hand_written_two_cubalif_graph_imports_checks_and_simulates(tmp_path, data):
    path = write_graph(two_layer_graph(), tmp_path / "model.nir")
    run_dir = import_nir(path, tmp_path / "run", data=data)
    for name in ("settings.json", "checkpoint.pt", "import.json", "metrics.json"):
        assert (run_dir / name).is_file(), name
    run = load_run(run_dir)  # what aspen export / sweep load
    assert json.loads((run_dir / "settings.json").read_text())["model"] == "chipnet"
    net = run.net.to_chipnet()
    assert [p.size for p in net.populations] == [24, 24] and net.readout.size == 6
    assert [(p.dash_syn, p.dash_mem) for p in net.populations] == [(2, 3), (2, 3)]
    # the exporter's convention (w_in = tau_syn/dt, r = tau_mem/dt) is snnTorch's: I_t = a I + W x, v = b v + I
    w_fc1 = read_graph(path).nodes["fc1"].weight
    np.testing.assert_allclose(net.edges[0].weight, w_fc1.T / 0.75, rtol=1e-6)
    assert any("subtractive reset" in n for n in import_notes(run_dir))

    calib = data.train.x[:8]
    cfg = quantize(net, readout_vmax=readout_vmax(run.net, calib), imu_if=data.frontend.to_dict())
    assert check(cfg) == []  # what `aspen check` runs
    logits, _ = evaluate_logits(run.net, data.test.x)
    for name in ("fast", "xylosim"):
        be = get_backend(name)
        be.load(cfg)
        r = be.run(data.test.x[:6] if name == "xylosim" else data.test.x)
        assert r.hidden_spike_counts.sum() > 0
        agree = float(np.mean(r.prediction == logits[:len(r.prediction)].argmax(-1)))
        assert agree >= 0.8, f"{name}: chip and float disagree on {1 - agree:.0%} of windows"


def test_graph_larger_than_the_chip_is_refused_naming_the_hidden_neuron_limit(tmp_path):
    path = write_graph(two_layer_graph(h1=300, h2=300), tmp_path / "big.nir")
    with pytest.raises(DesignRuleError) as e:
        import_nir(path, tmp_path / "run")
    rules = [v.rule for v in e.value.violations]
    assert "hidden-neurons" in rules
    hid = next(v for v in e.value.violations if v.rule == "hidden-neurons")
    assert hid.limit == chip.MAX_HIDDEN and "600" in hid.needed
    assert "input-expansion" in rules  # every reason, not the first
    assert not (tmp_path / "run").exists(), "nothing is written for a refused graph"


def test_every_inexpressible_node_is_refused_with_its_name(tmp_path):
    g = two_layer_graph()
    g.nodes["lif1"] = cuba_lif(24, v_reset=0.5)
    g.nodes["lif2"] = cuba_lif(24, tau_mem=0.002)  # shorter than the 5 ms step
    g.nodes["delay"] = nir.Delay(delay=np.full(6, 0.01))
    g.edges = [e for e in g.edges if e != ("fc3", "li")] + [("fc3", "delay"), ("delay", "li")]
    with pytest.raises(DesignRuleError) as e:
        graph_to_chipnet(g)
    got = rules_and_places(e.value)
    assert ("unsupported", "NIR node 'lif1' (CubaLIF)") in got
    assert ("unsupported", "NIR node 'lif2' (CubaLIF)") in got
    assert ("unsupported", "NIR node 'delay' (Delay)") in got
    msgs = [v.message() for v in e.value.violations]
    assert any("v_reset = 0.5" in m for m in msgs) and any("tau_mem = 2 ms" in m for m in msgs)
    assert all("\n" not in m for m in msgs)


def test_features_that_need_approximate_are_refused_then_noted():
    rng = np.random.default_rng(1)
    nodes = {"input": nir.Input(input_type=np.array([15])),
             "fc1": nir.Affine(weight=rng.normal(size=(8, 15)), bias=np.full(8, 0.1)),
             "lif": nir.LIF(tau=np.full(8, 0.04), r=np.full(8, 8.0), v_leak=np.zeros(8), v_threshold=np.ones(8)),
             "fc2": nir.Affine(weight=rng.normal(size=(3, 8)), bias=np.full(3, 0.2)), "li": cuba_li(3),
             "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "fc1"), ("fc1", "lif"), ("lif", "fc2"), ("fc2", "li"), ("li", "output")]
    g = nir.NIRGraph(nodes=nodes, edges=edges)
    with pytest.raises(DesignRuleError) as e:
        graph_to_chipnet(g)
    msgs = {v.where: v.message() for v in e.value.violations}
    assert "synaptic current" in msgs["NIR node 'lif' (LIF)"] and "approximate" in msgs["NIR node 'lif' (LIF)"]
    assert "Affine bias" in msgs["NIR node 'li' (CubaLI)"]
    imp = graph_to_chipnet(g, approximate=True)
    assert not imp.exact
    assert any("dash_syn 1 inserted" in n for n in imp.notes)
    assert any("steady state" in n for n in imp.notes)
    pop = imp.chipnet.populations[0]
    assert pop.dash_syn == 1 and pop.dash_mem == 3
    # into a LIF the Affine bias reaches the membrane directly: b = 2**-dash_mem R c, exactly
    np.testing.assert_allclose(pop.bias, 2.0 ** -3 * 8.0 * 0.1)


def test_structural_refusals():
    def graph(nodes, edges):
        return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)

    li_hidden = graph({"input": nir.Input(input_type=np.array([15])), "fc": nir.Linear(weight=np.ones((4, 15))),
                       "li": cuba_li(4), "fc2": nir.Linear(weight=np.ones((2, 4))), "lif": cuba_lif(2),
                       "output": nir.Output(output_type=np.array([2]))},
                      [("input", "fc"), ("fc", "li"), ("li", "fc2"), ("fc2", "lif"), ("lif", "output")])
    with pytest.raises(DesignRuleError, match="non-spiking neurons only as the readout"):
        graph_to_chipnet(li_hidden)
    direct = graph({"input": nir.Input(input_type=np.array([15])), "fc": nir.Linear(weight=np.ones((3, 15))),
                    "li": cuba_li(3), "output": nir.Output(output_type=np.array([3]))},
                   [("input", "fc"), ("fc", "li"), ("li", "output")])
    with pytest.raises(DesignRuleError, match="through hidden neurons"):
        graph_to_chipnet(direct)


def test_unreadable_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_graph(tmp_path / "missing.nir")
    bad = tmp_path / "bad.nir"
    bad.write_text("not hdf5")
    with pytest.raises(NirFormatError, match="not a readable NIR graph"):
        read_graph(bad)


# ---- the continuous-time mapping -------------------------------------------------------------


def euler_reference(g, x: np.ndarray) -> list[np.ndarray]:
    """Hidden spikes of `two_layer_graph`-like graphs by NIR's equations, forward Euler at dt.

    Subtractive multi-spike reset and one step per hop, as the chip (the two documented choices).
    """
    layers = [("fc1", "lif1"), ("fc2", "lif2")]
    out = []
    pre = x.astype(np.float64)
    for k, (fc, lif) in enumerate(layers):
        n = g.nodes[lif]
        cur = pre @ g.nodes[fc].weight.T
        if k > 0:
            cur = np.concatenate([np.zeros_like(cur[:, :1]), cur[:, :-1]], 1)
        i_syn = np.zeros(cur.shape[::2])
        v = np.zeros_like(i_syn)
        s = np.zeros_like(cur)
        ks, km = DT / n.tau_syn, DT / n.tau_mem
        for t in range(cur.shape[1]):
            i_syn = (1 - ks) * i_syn + ks * n.w_in * cur[:, t]
            v = (1 - km) * v + km * (n.v_leak + n.r * i_syn)
            spk = np.where(v >= n.v_threshold, np.minimum(np.floor(v / n.v_threshold), 31), 0)
            v = v - spk * n.v_threshold
            s[:, t] = spk
        out.append(s)
        pre = s
    return out


def test_import_follows_nir_equations_with_r_w_in_leak_and_thresholds():
    rng = np.random.default_rng(2)
    g = two_layer_graph(h1=10, h2=8, n_out=3, seed=3)
    g.nodes["lif1"] = cuba_lif(10, tau_syn=0.01, tau_mem=0.04, r=rng.uniform(1, 3, 10), w_in=rng.uniform(0.5, 2, 10),
                               v_leak=rng.uniform(-0.3, 0.6, 10), thr=rng.uniform(0.5, 1.5, 10))
    g.nodes["lif2"] = cuba_lif(8, tau_syn=0.02, tau_mem=0.08, r=24.0, w_in=6.0, v_leak=0.2, thr=0.7)
    imp = graph_to_chipnet(g)
    assert not any("->" in n for n in imp.notes), "these time constants are exact bit shifts"
    assert imp.chipnet.populations[0].threshold == 1.0  # per-neuron thresholds folded into the weights
    assert imp.chipnet.populations[1].threshold == pytest.approx(0.7)
    model = ChipNetModel.from_chipnet(imp.chipnet)
    x = (rng.random((4, 120, 15)) < 0.2) * rng.integers(1, 4, (4, 120, 15))
    with torch.no_grad():
        model(torch.as_tensor(x, dtype=torch.float32))
    ref = euler_reference(g, x)
    for got, want in zip(model.last_hidden_spikes, ref):
        assert want.sum() > 50
        assert np.mean(got.numpy() == want) > 0.995  # equal but for float rounding at threshold ties


def test_graph_dt_reads_time_constants_per_step():
    g = two_layer_graph(tau_syn=4e-4, tau_mem=8e-4)  # written for a 0.1 ms step, as snnTorch does
    with pytest.raises(DesignRuleError, match="graph_dt"):
        graph_to_chipnet(g)
    imp = graph_to_chipnet(g, graph_dt=1e-4)
    assert [(p.dash_syn, p.dash_mem) for p in imp.chipnet.populations] == [(2, 3), (2, 3)]
    assert imp.chipnet.metadata["nir_import"]["graph_dt"] == 1e-4


def test_inexact_time_constants_are_rounded_and_reported():
    imp = graph_to_chipnet(two_layer_graph(tau_mem=0.03))
    assert imp.chipnet.populations[0].dash_mem == 3  # log2(6) = 2.58 -> 3
    assert any("lif1: tau_mem 30 ms -> dash 3 (40 ms)" in n for n in imp.notes)


# ---- round trips -----------------------------------------------------------------------------


def assert_same_chipnet(a, b):
    assert a.n_in == b.n_in and len(a.populations) == len(b.populations)
    for p, q in zip(a.populations, b.populations):
        assert (p.size, p.dash_syn, p.dash_mem, p.threshold) == (q.size, q.dash_syn, q.dash_mem, q.threshold)
        np.testing.assert_array_equal(p.bias, q.bias)
    ea = {(e.src, e.dst): e.weight for e in a.edges}
    eb = {(e.src, e.dst): e.weight for e in b.edges}
    assert ea.keys() == eb.keys()
    for k in ea:
        np.testing.assert_array_equal(ea[k], eb[k])
    r, s = a.readout, b.readout
    assert (r.size, r.dash_syn, r.dash_mem) == (s.size, s.dash_syn, s.dash_mem)
    np.testing.assert_array_equal(r.bias, s.bias)


def test_round_trip_of_the_aspen_network_through_a_run_directory(tmp_path):
    from models.aspen_synnet import AspenSynNet, NetSpec

    torch.manual_seed(0)
    net = AspenSynNet(NetSpec(hidden=(12, 10, 8), n_out=4))
    with torch.no_grad():
        for n in net.neurons:
            n.bias.uniform_(-0.2, 0.2)
        net.readout_bias.uniform_(-0.2, 0.2)
    path = export_nir(net, tmp_path / "model.nir")
    run = load_run(import_nir(path, tmp_path / "run"))
    assert_same_chipnet(net.to_chipnet(), run.net.to_chipnet())
    assert import_notes(tmp_path / "run") == []  # our own graphs say they use the chip's reset: exact
    x = torch.as_tensor((np.random.default_rng(0).random((3, 80, 15)) < 0.3) * 2, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(run.net(x)[0], net(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,spec", [("mps", {"hidden": [10, 6], "n_out": 3}),
                                       ("stc_lif", {"hidden": [8, 8], "n_out": 3, "groups": 2})])
def test_round_trip_of_other_models(name, spec, tmp_path):
    from models import build_model

    torch.manual_seed(1)
    net = build_model(name, spec)
    approximate = name == "stc_lif"
    if approximate:
        with pytest.raises(DesignRuleError):
            export_nir(net, tmp_path / "m.nir")  # refused like aspen export
    path = export_nir(net, tmp_path / "m.nir", approximate=approximate)
    cn = net.to_chipnet(approximate=True) if approximate else net.to_chipnet()
    back = graph_to_chipnet(read_graph(path))
    assert back.exact
    assert_same_chipnet(cn, back.chipnet)
    if approximate:
        assert any(e.src == e.dst for e in back.chipnet.edges)  # recurrent within-layer weights survive
    else:
        assert back.chipnet.populations[0].threshold != 1.0  # 1 / (1 - alpha) survives


def test_s2tdpt_export_to_nir_is_refused(tmp_path):
    from models import build_model

    with pytest.raises(DesignRuleError):
        export_nir(build_model("s2tdpt", {"hidden": [8], "n_tokens": 4}), tmp_path / "m.nir")
    assert not (tmp_path / "m.nir").exists()


# ---- a graph written by another library's own NIR export --------------------------------------


def test_snntorch_export_imports_and_simulates(tmp_path, data):
    snn = pytest.importorskip("snntorch", reason="dev dependency: pip install snntorch==1.0.0 nirtorch==2.6")
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)

    def syn(n, out=False):
        return snn.Synaptic(alpha=torch.full((n,), 0.75), beta=torch.full((n,), 0.875), threshold=torch.ones(n),
                            init_hidden=True, output=out)

    net = torch.nn.Sequential(torch.nn.Linear(15, 20, bias=False), syn(20), torch.nn.Linear(20, 16, bias=False),
                              syn(16), torch.nn.Linear(16, 6, bias=False), syn(6, True))
    graph = export_to_nir(net, torch.zeros(1, 15), ignore_dims=[0])
    path = write_graph(graph, tmp_path / "snntorch.nir")
    run_dir = import_nir(path, tmp_path / "run", graph_dt=1e-4)  # snnTorch writes tau for a 0.1 ms step
    run = load_run(run_dir)
    cn = run.net.to_chipnet()
    assert [p.size for p in cn.populations] == [20, 16, 6] and cn.readout.size == 6
    w1 = next(e.weight for e in cn.edges if e.src == INPUT)
    # snnTorch: syn = alpha syn + W x; the chip adds input before its decay, so x' = W x / alpha
    np.testing.assert_allclose(w1, net[0].weight.detach().numpy().T / 0.75, rtol=1e-6)
    assert any(e.dst == READOUT for e in cn.edges)
    notes = import_notes(run_dir)
    assert any("counted by 6 readout neurons" in n for n in notes)
    cfg = quantize(cn, readout_vmax=readout_vmax(run.net, data.train.x[:8]))
    assert check(cfg) == []
    be = get_backend("fast")
    be.load(cfg)
    r = be.run(data.test.x[:6])
    assert r.hidden_spike_counts.sum() > 0 and r.prediction.shape == (6,)


def test_recurrent_snntorch_layer_imports_with_approximate(tmp_path):
    snn = pytest.importorskip("snntorch", reason="dev dependency: pip install snntorch==1.0.0 nirtorch==2.6")
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(1)
    rsyn = snn.RSynaptic(alpha=torch.full((20,), 0.75), beta=torch.full((20,), 0.875), threshold=torch.ones(20),
                         linear_features=20, init_hidden=True)
    out = snn.Synaptic(alpha=torch.full((6,), 0.75), beta=torch.full((6,), 0.875), threshold=torch.ones(6),
                       init_hidden=True, output=True)
    net = torch.nn.Sequential(torch.nn.Linear(15, 20, bias=False), rsyn, torch.nn.Linear(20, 6, bias=False), out)
    path = write_graph(export_to_nir(net, torch.zeros(1, 15), ignore_dims=[0]), tmp_path / "rsyn.nir")
    with pytest.raises(DesignRuleError, match="Affine bias"):  # its recurrent nn.Linear has a bias
        graph_to_chipnet(read_graph(path), graph_dt=1e-4)
    imp = graph_to_chipnet(read_graph(path), graph_dt=1e-4, approximate=True)
    rec = [e for e in imp.chipnet.edges if e.src == e.dst]
    assert len(rec) == 1
    np.testing.assert_allclose(rec[0].weight, net[1].recurrent.weight.detach().numpy().T / 0.75, rtol=1e-6)
    cfg = quantize(imp.chipnet)
    assert check(cfg) == [] and np.count_nonzero(cfg.hidden_weights) > 0


def test_nested_graphs_are_inlined():
    rng = np.random.default_rng(4)
    w_rec = rng.normal(size=(8, 8)) * 0.2
    inner = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([8])), "lif": cuba_lif(8),
                                "rec": nir.Linear(weight=w_rec), "output": nir.Output(output_type=np.array([8]))},
                         edges=[("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")])
    w1, w2 = rng.normal(size=(8, 15)), rng.normal(size=(3, 8))
    outer = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([15])), "fc1": nir.Linear(weight=w1),
                                "block": inner, "fc2": nir.Linear(weight=w2), "li": cuba_li(3),
                                "output": nir.Output(output_type=np.array([3]))},
                         edges=[("input", "fc1"), ("fc1", "block"), ("block", "fc2"), ("fc2", "li"),
                                ("li", "output")], type_check=False)
    cn = graph_to_chipnet(outer).chipnet
    assert [p.name for p in cn.populations] == ["block.lif"]
    edges = {(e.src, e.dst): e.weight for e in cn.edges}
    assert set(edges) == {(INPUT, 0), (0, 0), (0, READOUT)}
    np.testing.assert_allclose(edges[(0, 0)], w_rec.T / 0.75)


def test_scale_and_fan_in_are_folded_into_the_weights():
    """Linear -> Scale equals the scaled Linear; two paths into one node add up."""
    rng = np.random.default_rng(5)
    w, s, w_skip = rng.normal(size=(6, 15)), rng.uniform(0.5, 2, 6), rng.normal(size=(6, 15))
    nodes = {"input": nir.Input(input_type=np.array([15])), "fc": nir.Linear(weight=w), "sc": nir.Scale(scale=s),
             "skip": nir.Linear(weight=w_skip), "lif": cuba_lif(6), "ro": nir.Linear(weight=np.eye(6)[:3]),
             "li": cuba_li(3), "output": nir.Output(output_type=np.array([3]))}
    edges = [("input", "fc"), ("fc", "sc"), ("sc", "lif"), ("input", "skip"), ("skip", "lif"), ("lif", "ro"),
             ("ro", "li"), ("li", "output")]
    cn = graph_to_chipnet(nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)).chipnet
    w_in = next(e.weight for e in cn.edges if e.src == INPUT)
    np.testing.assert_allclose(w_in, (s[:, None] * w + w_skip).T / 0.75, rtol=1e-12)
