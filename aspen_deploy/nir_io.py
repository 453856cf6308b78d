"""NIR (Neuromorphic Intermediate Representation) in and out: NIR graph <-> `ChipNet`.

The only module that imports `nir`. `graph_to_chipnet` converts a graph of ``Input``,
``Affine``/``Linear``/``Scale``, ``LIF``/``CubaLIF``/``IF``/``LI``/``CubaLI`` (recurrent
edges included, nested graphs flattened) and ``Output`` into the chip's terms, and refuses
everything else with `drc.Violation`s (rule ``"unsupported"``: limit, what the node needs,
the node's name), all of them at once in one `DesignRuleError`. Size limits are left to the
design-rule checker after `quantize` (`import_nir` runs it), so a graph that is too big is
refused with the checker's own rule ids (``"hidden-neurons"``, ``"input-expansion"``, ...).
`chipnet_to_graph` writes any `ChipNet` as NIR; importing it back gives the same numbers.

Mapping (dt = the chip step, 5 ms). NIR's neurons are continuous-time:

    CubaLIF:  tau_syn dI/dt = -I + w_in S          tau_mem dv/dt = (v_leak - v) + R I
    LIF:      tau dv/dt = (v_leak - v) + R S        IF: dv/dt = R S        LI / CubaLI: no spikes
    spike when v > v_threshold, then v = v_reset

Exporters (snnTorch, Norse, Rockpool, ...) discretise them with forward Euler at their step,
reading S as the weighted events of one step:

    I_t = (1 - dt/tau_syn) I_{t-1} + (dt/tau_syn) w_in x_t
    v_t = (1 - dt/tau_mem) v_{t-1} + (dt/tau_mem) (v_leak + R I_t)

and the chip (float form, `models.lif`) computes, with alpha = 1 - 2**-dash,

    a_t = alpha_syn (a_{t-1} + x'_t)        v_t = alpha_mem v_{t-1} + a_t + b

With dash = round(log2(tau / dt)) (so 2**-dash stands for dt / tau, exactly when tau is dt
times a power of two) the two agree for ``a = 2**-dash_mem R I`` when

    x'_j = g_j x_j,   g_j = R_j w_in,j 2**-(dash_mem + dash_syn) / alpha_syn     (per target neuron j)
    b_j  = 2**-dash_mem v_leak,j                                              (leak to a rest = bias)
    threshold_j = v_threshold,j

so every incoming weight column j is multiplied by g_j. A chip bias *is* a leak towards the rest
``b / (1 - alpha_mem)``, so ``v_leak`` is exact. What the chip cannot express is refused:
``v_reset != 0`` (the chip only subtracts the threshold), ``tau < dt``, thresholds <= 0,
per-neuron time constants that round to different decays within one node, non-spiking
neurons anywhere but the readout, an input wired straight to the readout, algebraic loops
and any other node type. Two things need ``approximate=True``:

- ``LIF``/``IF``/``LI`` have no synaptic current, but every chip neuron filters its input
  through ``isyn`` (dash 0 would zero it): the importer uses dash_syn = 1 (alpha = 1/2) and
  ``g_j = R_j 2**-dash_mem``, which keeps the charge of every event (DC gain 1) but spreads
  it over about two steps.
- an ``Affine`` bias feeding a synaptic current (CubaLIF/CubaLI): the chip adds biases to the
  membrane only; it becomes the membrane bias with the same steady state
  ``2**-dash_mem R w_in c``, and differs during the first ~tau_syn after a reset. (Into
  LIF/IF/LI the same bias is exact: it reaches the membrane directly.)

Always reported as notes (``ChipNet.metadata["nir_import"]["notes"]``, ``import.json``), never
silent: time constants that are not dt times a power of two; reading NIR's reset to 0 as the
chip's subtractive reset (the overshoot above threshold is kept, and a hidden neuron may fire
up to 31 spikes in one step); and the chip's latency of one step per hop between neuron layers
(simulators that update all layers within a step see a layer's spikes at once). Graphs written
by `chipnet_to_graph` state the chip's semantics in their metadata and import exactly.

Per-neuron thresholds within a node are folded into the incoming weights and biases (exact:
the state scales with the threshold). ``IF`` is read per step (v += R x, as Sinabs and
Rockpool write it) with the slowest decay, dash_mem 15. An ``Output`` fed by spiking neurons
is read by counting readout neurons (their weights, dash_syn 1, dash_mem 15 ~ no leak): the
class is the argmax of the running count, averaged over the last 3/4 of the window.

``graph_dt``: the step the graph's time constants were written for, when it is not the chip's
(snnTorch's exporter writes ``tau = 1e-4 / (1 - beta)`` for a step of 0.1 ms): time constants
are then read per step, ``tau_chip = tau * dt / graph_dt``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aspen_deploy import chip
from aspen_deploy.drc import DesignRuleError, Violation
from aspen_deploy.io import atomic_write, atomic_write_json
from aspen_deploy.ir import INPUT, READOUT, ChipNet, Edge, Population, as_chipnet

NEURON_TYPES = ("LIF", "CubaLIF", "IF", "LI", "CubaLI")
OPERATOR_TYPES = ("Affine", "Linear", "Scale")
SUPPORTED_TYPES = ("Input", "Output", *OPERATOR_TYPES, *NEURON_TYPES)
SPIKING = ("LIF", "CubaLIF", "IF")
WITH_SYNAPSE = ("CubaLIF", "CubaLI")
COUNT_READOUT_DASH_MEM = chip.DASH_MAX  # ~ no leak: the readout membrane counts spikes
FORMAT = "aspen_deploy ChipNet"


class NirFormatError(ValueError):
    """A file or graph that is not a readable NIR graph (not a chip limit: a broken input)."""


@dataclass
class NirImport:
    """What `graph_to_chipnet` made: the network, and every approximation it took (notes)."""

    chipnet: ChipNet
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not self.notes


# ---- small helpers ---------------------------------------------------------------------------


def _nir():
    try:
        import nir
    except ImportError as e:  # pragma: no cover - nir is a core dependency
        raise ImportError("NIR support needs the 'nir' package: pip install nir") from e
    return nir


def _type(node: Any) -> str:
    return type(node).__name__


def _arr(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor left in a graph by an exporter
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _ms(t: float) -> str:
    return f"{t * 1e3:.4g} ms"


def _unsupported(needed: str, where: str, limit: str, detail: str | None = None) -> Violation:
    return Violation("unsupported", limit, needed, where, detail)


def _where(name: str, node: Any) -> str:
    return f"NIR node '{name}' ({_type(node)})"


def read_graph(path: str | Path) -> Any:
    """Read a ``.nir`` file; raises `NirFormatError` / FileNotFoundError with what is wrong."""
    nir = _nir()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"NIR file not found: {p}")
    try:
        g = nir.read(str(p))
    except Exception as e:  # h5py / nir raise many types for a bad file
        raise NirFormatError(f"{p} is not a readable NIR graph ({type(e).__name__}: {e})") from None
    if not isinstance(g, nir.NIRGraph):
        raise NirFormatError(f"{p} holds a single {_type(g)} node, not a NIR graph")
    return g


# ---- NIR -> ChipNet --------------------------------------------------------------------------


def _flatten(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]], set[str]]:
    """Nodes and edges with nested graphs inlined (names ``outer.inner``); the set holds pass-throughs.

    An edge into a subgraph goes to its one ``Input``, an edge out of it leaves its one ``Output``;
    those inner Input/Output nodes become identities.
    """
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    identity: set[str] = set()
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges, sub_id = _flatten(node, full + ".")
            nodes.update(sub_nodes)
            edges += sub_edges
            identity |= sub_id
            ins = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NirFormatError(f"nested graph '{full}' has {len(ins)} Input and {len(outs)} Output nodes; "
                                     f"only subgraphs with one of each can be inlined")
            entry[full] = f"{full}.{ins[0]}"
            exit_[full] = f"{full}.{outs[0]}"
            identity |= {entry[full], exit_[full]}
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        edges.append((exit_.get(a, a), entry.get(b, b)))
    return nodes, edges, identity


@dataclass
class _Neuron:
    name: str
    kind: str
    size: int
    dash_syn: int
    dash_mem: int
    gain: np.ndarray  # g_j, multiplies incoming weight column j
    bias: np.ndarray  # membrane bias
    bias_gain: np.ndarray  # membrane bias per unit of constant (Affine) input
    threshold: np.ndarray


def _neuron_size(node: Any) -> int:
    sizes = [int(np.asarray(v).size) for k, v in vars(node).items()
             if k not in ("metadata", "input_type", "output_type") and isinstance(v, (np.ndarray, list, float, int))]
    return max(sizes, default=1)


def _param(node: Any, key: str, n: int, default: float | None = None) -> np.ndarray:
    v = getattr(node, key, None)
    if v is None:
        v = default
    a = _arr(v).reshape(-1)
    if a.size not in (1, n):
        raise NirFormatError(f"NIR node parameter '{key}' has {a.size} values for {n} neurons")
    return np.broadcast_to(a, (n,)).astype(np.float64)


def _dash(name: str, node: Any, key: str, tau: np.ndarray, dt: float, time_scale: float,
          out: list[Violation], notes: list[str]) -> int | None:
    """One bit-shift decay for a node's time constants (see module docstring)."""
    tau_c = tau * time_scale
    where = _where(name, node)
    if not np.all(np.isfinite(tau_c)) or np.any(tau_c < dt * (1 - 1e-9)):
        worst = float(np.nanmin(tau_c)) if np.any(np.isfinite(tau_c)) else float("nan")
        out.append(_unsupported(f"{key} = {_ms(worst)}", where,
                                f"time constants >= the chip step {_ms(dt)} (bit-shift decays)",
                                "time constants are read at the chip's 5 ms step; if the graph was written for "
                                "another step, give it (graph_dt, e.g. 1e-4 for snnTorch)"))
        return None
    dashes = np.round(np.log2(np.maximum(tau_c, dt) / dt)).astype(int)
    if dashes.min() != dashes.max():
        out.append(_unsupported(f"{key} from {_ms(tau_c.min())} to {_ms(tau_c.max())} "
                                f"(decays {dashes.min()}..{dashes.max()})", where,
                                "one decay per neuron node in this mapping",
                                "split the layer into nodes with a common time constant"))
        return None
    d = int(dashes[0])
    if d > chip.DASH_MAX:
        notes.append(f"{name}: {key} {_ms(float(tau_c[0]))} exceeds the slowest decay; "
                     f"dash {chip.DASH_MAX} ({_ms(dt * 2 ** chip.DASH_MAX)}) used")
        d = chip.DASH_MAX
    elif not np.allclose(tau_c, dt * 2.0 ** d, rtol=1e-6):
        notes.append(f"{name}: {key} {_ms(float(tau_c[0]))} -> dash {d} ({_ms(dt * 2.0 ** d)})")
    return d


def _map_neuron(name: str, node: Any, n: int, dt: float, time_scale: float, approximate: bool,
                out: list[Violation], notes: list[str]) -> _Neuron | None:
    kind = _type(node)
    where = _where(name, node)
    n_before = len(out)
    if kind in SPIKING:
        v_reset = _param(node, "v_reset", n, 0.0)
        if np.any(v_reset != 0):
            out.append(_unsupported(f"reset to v_reset = {float(v_reset[np.flatnonzero(v_reset)[0]]):g}", where,
                                    "subtractive reset by the threshold (NIR v_reset = 0)"))
        thr = _param(node, "v_threshold", n)
        if np.any(~np.isfinite(thr)) or np.any(thr <= 0):
            out.append(_unsupported(f"v_threshold = {float(np.min(thr)):g}", where, "thresholds > 0",
                                    "a threshold <= 0 fires 31 spikes every step on the chip"))
    else:
        thr = np.ones(n)
    if kind not in WITH_SYNAPSE and not approximate:
        out.append(_unsupported(f"a {kind} neuron without synaptic current", where,
                                "neurons whose input passes a synaptic current isyn (decay >= 1)",
                                "approximate=True (aspen import --approximate) inserts the shortest synaptic "
                                "filter (dash_syn 1), keeping each event's charge but spreading it over ~2 steps"))
    r = _param(node, "r", n, 1.0)
    dash_syn = dash_mem = None
    if kind in WITH_SYNAPSE:
        dash_syn = _dash(name, node, "tau_syn", _param(node, "tau_syn", n), dt, time_scale, out, notes)
    else:
        dash_syn = 1
    if kind == "IF":
        dash_mem = chip.DASH_MAX
        notes.append(f"{name}: IF has no leak; dash_mem {chip.DASH_MAX} ({_ms(dt * 2 ** chip.DASH_MAX)}) used, "
                     f"and its input is read per step (v += R x)")
    else:
        dash_mem = _dash(name, node, "tau_mem" if kind in WITH_SYNAPSE else "tau",
                         _param(node, "tau_mem" if kind in WITH_SYNAPSE else "tau", n), dt, time_scale, out, notes)
    if len(out) > n_before or dash_syn is None or dash_mem is None:
        return None
    if kind not in WITH_SYNAPSE:
        notes.append(f"{name}: {kind} has no synaptic current; dash_syn 1 inserted (approximation)")
    a_s = chip.decay_factor(dash_syn)
    k_mem = 1.0 if kind == "IF" else 2.0 ** -dash_mem
    if kind in WITH_SYNAPSE:
        w_in = _param(node, "w_in", n, 1.0)
        gain = r * w_in * k_mem * 2.0 ** -dash_syn / a_s if a_s > 0 else np.zeros(n)
        bias_gain = k_mem * r * w_in
    else:
        gain = r * k_mem
        bias_gain = r * k_mem
    v_leak = np.zeros(n) if kind == "IF" else _param(node, "v_leak", n, 0.0)
    return _Neuron(name, kind, n, int(dash_syn), int(dash_mem), gain, k_mem * v_leak, bias_gain, thr)


def _operator(name: str, node: Any) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(matrix (out, in) or None, elementwise scale or None, bias or None) of an operator node."""
    kind = _type(node)
    if kind == "Scale":
        return None, _arr(node.scale).reshape(-1), None
    w = _arr(node.weight)
    if w.ndim != 2:
        raise NirFormatError(f"NIR node '{name}' ({kind}) has a {w.ndim}-D weight of shape {w.shape}; "
                             f"only 2-D (out, in) matrices map to chip weights")
    b = _arr(node.bias).reshape(-1) if kind == "Affine" else None
    return w, None, b


def _apply(op: tuple, m: np.ndarray, name: str) -> np.ndarray:
    w, s, _ = op
    if w is not None:
        if w.shape[1] != m.shape[0]:
            raise NirFormatError(f"NIR node '{name}' expects {w.shape[1]} inputs but receives {m.shape[0]}")
        return w @ m
    if s.size not in (1, m.shape[0]):
        raise NirFormatError(f"NIR node '{name}' scales {s.size} values but receives {m.shape[0]}")
    return s.reshape(-1, 1) * m


def graph_to_chipnet(graph: Any, *, graph_dt: float | None = None, approximate: bool = False,
                     name: str = "nir", dt: float = chip.DT_S) -> NirImport:
    """A NIR graph in the chip's terms (mapping and refusals in the module docstring).

    Raises `DesignRuleError` listing every node or parameter the chip cannot express, and
    `NirFormatError` for a malformed graph. Size limits are not checked here (see `import_nir`).
    """
    nir = _nir()
    if not isinstance(graph, nir.NIRGraph):
        raise NirFormatError(f"expected a NIR graph, got a {_type(graph)}")
    if graph_dt is not None and not (math.isfinite(graph_dt) and graph_dt > 0):
        raise ValueError(f"graph_dt must be a positive step in seconds, got {graph_dt}")
    time_scale = 1.0 if graph_dt is None else dt / float(graph_dt)
    nodes, edges, identity = _flatten(graph)
    for a, b in edges:
        for x in (a, b):
            if x not in nodes:
                raise NirFormatError(f"edge ({a!r}, {b!r}) names a node {x!r} that the graph does not have")
    out: list[Violation] = []
    notes: list[str] = []

    kinds: dict[str, str] = {}
    for nm, node in nodes.items():
        t = _type(node)
        if nm in identity:
            kinds[nm] = "identity"
        elif t == "Input":
            kinds[nm] = "input"
        elif t == "Output":
            kinds[nm] = "output"
        elif t in OPERATOR_TYPES:
            kinds[nm] = "operator"
        elif t in NEURON_TYPES:
            kinds[nm] = "neuron"
        else:
            kinds[nm] = "unsupported"
            out.append(_unsupported(f"a {t} node", _where(nm, node), "the NIR nodes " + ", ".join(SUPPORTED_TYPES),
                                    "Xylo IMU has dense weights between LIF neurons only"))
    inputs = [k for k, v in kinds.items() if v == "input"]
    outputs = [k for k, v in kinds.items() if v == "output"]
    if len(inputs) != 1:
        out.append(_unsupported(f"{len(inputs)} Input nodes", "NIR graph", "one Input (the 15 IMU channels)"))
    if len(outputs) != 1:
        out.append(_unsupported(f"{len(outputs)} Output nodes", "NIR graph", "one Output (the readout)"))
    if len(inputs) != 1 or len(outputs) != 1:
        raise DesignRuleError(out)
    inp, outp = inputs[0], outputs[0]
    in_type = np.asarray(nodes[inp].input_type.get("input", nodes[inp].output_type.get("output")))
    if in_type.ndim != 1 or in_type.size != 1:
        in_shape = tuple(int(v) for v in np.atleast_1d(in_type))
        raise DesignRuleError([_unsupported(f"an input of shape {in_shape}", _where(inp, nodes[inp]),
                                            "a flat vector of input channels")])
    n_in = int(in_type[0])

    succ: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        succ[a].append(b)
    ops = {}
    for k in [k for k, v in kinds.items() if v == "operator"]:
        w = getattr(nodes[k], "weight", None)
        if w is not None and _arr(w).ndim != 2:
            kinds[k] = "unsupported"
            out.append(_unsupported(f"a {_arr(w).ndim}-D weight of shape {_arr(w).shape}", _where(k, nodes[k]),
                                    "2-D (out, in) weight matrices"))
        else:
            ops[k] = _operator(k, nodes[k])

    # sizes of neuron nodes: from their parameters, else from what reaches them
    sizes = {k: _neuron_size(nodes[k]) for k, v in kinds.items() if v == "neuron"}

    contrib: dict[tuple[str, str], np.ndarray] = {}
    const_in: dict[str, np.ndarray] = {}

    def walk(src: str, here: str, m: np.ndarray, path: tuple[str, ...], const: bool) -> None:
        for nxt in succ[here]:
            kind = kinds[nxt]
            if kind in ("neuron", "output"):
                if const:
                    const_in[nxt] = const_in.get(nxt, 0) + m[:, 0]
                elif (src, nxt) in contrib:
                    if contrib[(src, nxt)].shape != m.shape:
                        raise NirFormatError(f"paths from '{src}' to '{nxt}' disagree in shape "
                                             f"({contrib[(src, nxt)].shape} vs {m.shape})")
                    contrib[(src, nxt)] = contrib[(src, nxt)] + m
                else:
                    contrib[(src, nxt)] = m
            elif kind in ("operator", "identity"):
                if nxt in path:
                    out.append(_unsupported("a loop through " + " -> ".join(path[path.index(nxt):] + (nxt,)),
                                            _where(nxt, nodes[nxt]), "loops that pass through a neuron",
                                            "a loop of weights alone has no time step to take"))
                    continue
                walk(src, nxt, _apply(ops[nxt], m, nxt) if kind == "operator" else m, path + (nxt,), const)
            elif kind == "input":
                out.append(_unsupported("an edge into the Input node", _where(nxt, nodes[nxt]), "a source-only Input"))

    walk(inp, inp, np.eye(n_in), (inp,), False)
    for k in sizes:
        walk(k, k, np.eye(sizes[k]), (k,), False)
    for k, op in ops.items():  # each Affine bias once, through whatever follows it
        if op[2] is not None and np.any(op[2] != 0):
            walk(k, k, op[2].reshape(-1, 1), (k,), True)

    for (s, d), m in contrib.items():
        if d in sizes and m.shape[0] != sizes[d]:
            raise NirFormatError(f"NIR node '{d}' has {sizes[d]} neurons but '{s}' sends it {m.shape[0]} values")

    # non-spiking neurons: only as the readout, fed by hidden neurons, read whole by Output
    readout_nodes = [k for k in sizes if _type(nodes[k]) in ("LI", "CubaLI")]
    out_srcs = [s for (s, d) in contrib if d == outp]
    for k in readout_nodes:
        feeds = [d for (s, d) in contrib if s == k]
        if feeds != [outp]:
            out.append(_unsupported(f"a non-spiking {_type(nodes[k])} neuron feeding {', '.join(feeds) or 'nothing'}",
                                    _where(k, nodes[k]), "non-spiking neurons only as the readout, feeding Output"))
        elif not _is_identity(contrib[(k, outp)]):
            out.append(_unsupported("the Output reading a weighted mix of membranes", _where(k, nodes[k]),
                                    "Output reads each readout neuron's membrane as it is"))
        if (inp, k) in contrib:
            out.append(_unsupported("input channels wired straight to the readout", _where(k, nodes[k]),
                                    "inputs reach the readout through hidden neurons"))
    if inp in out_srcs:
        out.append(_unsupported("input channels wired straight to the Output", _where(outp, nodes[outp]),
                                "inputs reach the readout through hidden neurons"))
    if len(readout_nodes) > 1 or (readout_nodes and len(out_srcs) > 1):
        out.append(_unsupported(f"an Output fed by {', '.join(sorted(out_srcs))}", _where(outp, nodes[outp]),
                                "one readout layer: either one LI/CubaLI node or spiking neurons"))
    if not out_srcs:
        out.append(_unsupported("an Output that nothing reaches", _where(outp, nodes[outp]), "a connected readout"))

    neurons: dict[str, _Neuron] = {}
    for k, n in sizes.items():
        mapped = _map_neuron(k, nodes[k], n, dt, time_scale, approximate, out, notes)
        if mapped is not None:
            neurons[k] = mapped
    for k, c in const_in.items():
        if k == outp:
            out.append(_unsupported("an Affine bias added to the Output", _where(outp, nodes[outp]),
                                    "biases on neurons only"))
        elif k in neurons and neurons[k].kind in WITH_SYNAPSE and not approximate:
            out.append(_unsupported("a constant (Affine bias) input to its synaptic current", _where(k, nodes[k]),
                                    "biases added to the membrane (v_mem_bias)",
                                    "approximate=True (aspen import --approximate) uses the membrane bias with the "
                                    "same steady state; they differ for ~tau_syn after each reset"))
    if out:
        raise DesignRuleError(out)

    # --- assemble the ChipNet ------------------------------------------------------------------
    hidden = [k for k in sizes if k not in readout_nodes]
    order = _chip_order(hidden, {k: [d for (s, d) in contrib if s == k and d in hidden] for k in hidden},
                        {d for (s, d) in contrib if s == inp and d in hidden}, nodes)
    idx = {k: i for i, k in enumerate(order)}
    pops: list[Population] = []
    norm: dict[str, np.ndarray] = {}
    for k in order:
        nu = neurons[k]
        bias = nu.bias + nu.bias_gain * const_in.get(k, 0.0)
        if k in const_in and nu.kind in WITH_SYNAPSE:
            notes.append(f"{k}: Affine bias into the synaptic current -> membrane bias with the same steady state "
                         f"(approximation)")
        thr = nu.threshold
        if np.allclose(thr, thr[0], rtol=0, atol=0):
            norm[k], theta = np.ones(nu.size), float(thr[0])
        else:
            norm[k], theta = 1.0 / thr, 1.0
            notes.append(f"{k}: per-neuron thresholds folded into its weights and bias (threshold 1.0)")
        pops.append(Population(k, nu.size, nu.dash_syn, nu.dash_mem, theta, bias * norm[k]))

    chip_edges: list[Edge] = []
    for (s, d), m in contrib.items():
        if d == outp or d in readout_nodes:
            continue
        src = INPUT if s == inp else idx[s]
        chip_edges.append(Edge(src, idx[d], (m * (neurons[d].gain * norm[d])[:, None]).T))

    if readout_nodes:
        r = neurons[readout_nodes[0]]
        readout = Population(r.name, r.size, r.dash_syn, r.dash_mem, 1.0, r.bias + r.bias_gain * const_in.get(r.name, 0))
        if r.name in const_in and r.kind in WITH_SYNAPSE:
            notes.append(f"{r.name}: Affine bias into the synaptic current -> membrane bias with the same steady state "
                         f"(approximation)")
        for (s, d), m in contrib.items():
            if d == r.name:
                chip_edges.append(Edge(idx[s], READOUT, (m * r.gain[:, None]).T))
    else:
        n_out = int(next(iter(contrib[(s, outp)] for s in out_srcs)).shape[0])
        readout = Population("readout", n_out, 1, COUNT_READOUT_DASH_MEM, 1.0, np.zeros(n_out))
        for s in out_srcs:
            chip_edges.append(Edge(idx[s], READOUT, contrib[(s, outp)].T.copy()))
        notes.append(f"Output reads spikes of {', '.join(sorted(out_srcs))}: counted by {n_out} readout neurons "
                     f"(dash_syn 1, dash_mem {COUNT_READOUT_DASH_MEM}); the class is the argmax of the running count")
    chip_edges.sort(key=lambda e: (len(order) if e.dst == READOUT else e.dst, -1 if e.src == INPUT else e.src))

    own = isinstance(graph.metadata, dict) and _meta(graph.metadata).get("format") == FORMAT
    if not own and any(_type(nodes[k]) in SPIKING for k in order):
        notes.append("NIR reset to 0 on a spike read as the chip's subtractive reset (the overshoot above threshold "
                     "is kept) with up to 31 spikes per step per hidden neuron")
    if not own and any(e.src != INPUT for e in chip_edges):
        notes.append("each hop between neuron layers takes one chip step (simulators that update all layers within "
                     "one step see a layer's spikes at once)")
    net = ChipNet(n_in, pops, chip_edges, readout, dt=dt, name=name,
                  metadata={"nir_import": {"notes": list(notes), "exact": not notes, "graph_dt": graph_dt,
                                           "nodes": {k: _type(nodes[k]) for k in sorted(nodes, key=_natural_key)}}})
    return NirImport(net, notes)


def _is_identity(m: np.ndarray) -> bool:
    return m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(m.shape[0]))


def _meta(md: Any) -> dict:
    a = md.get("aspen", {}) if isinstance(md, dict) else {}
    return a if isinstance(a, dict) else {}


def _chip_order(hidden: list[str], succ: dict[str, list[str]], from_input: set[str], nodes: dict[str, Any]) -> list[str]:
    """Populations in chip order: an explicit ``aspen.index`` if every node has one, else by depth.

    Depth = longest path from the input over forward edges (edges closing a cycle are ignored),
    ties broken by natural name order; nodes fed by the input come first (input expansion).
    """
    idx = {k: _meta(getattr(nodes[k], "metadata", {})).get("index") for k in hidden}
    if all(v is not None for v in idx.values()):
        return sorted(hidden, key=lambda k: int(idx[k]))
    names = sorted(hidden, key=_natural_key)
    depth = {k: 0 for k in names}
    state: dict[str, int] = {}
    back: set[tuple[str, str]] = set()

    def dfs(k: str) -> None:
        state[k] = 1
        for d in succ.get(k, []):
            if state.get(d) == 1:
                back.add((k, d))
            elif d not in state:
                dfs(d)
        state[k] = 2

    for k in sorted(names, key=lambda k: (k not in from_input, _natural_key(k))):
        if k not in state:
            dfs(k)
    changed = True
    for _ in range(len(names)):  # longest path on the DAG left after removing back edges
        if not changed:
            break
        changed = False
        for k in names:
            for d in succ.get(k, []):
                if (k, d) not in back and d != k and depth[d] < depth[k] + 1:
                    depth[d], changed = depth[k] + 1, True
    return sorted(names, key=lambda k: (k not in from_input, depth[k], _natural_key(k)))


# ---- ChipNet -> NIR --------------------------------------------------------------------------


def chipnet_to_graph(net: ChipNet) -> Any:
    """A `ChipNet` as a NIR graph of CubaLIF populations, Linear weights and a CubaLI readout.

    Inverse of the import mapping (module docstring): tau = dt 2**dash, R = 2**dash_mem,
    w_in = alpha_syn 2**dash_syn (so g = 1 and weights are written as they are, transposed to
    NIR's (out, in)), v_leak = b 2**dash_mem, v_threshold = threshold, v_reset = 0. Node metadata
    ``aspen`` records the subtractive reset, the 31-spike cap and the chip order.
    """
    nir = _nir()
    dt = float(net.dt)
    names: list[str] = []
    used = {"input", "output"}
    for p in net.populations:
        base = re.sub(r"[^A-Za-z0-9_]", "_", p.name) or "pop"
        nm, i = base, 1
        while nm in used:
            nm, i = f"{base}_{i}", i + 1
        used.add(nm)
        names.append(nm)
    r_name = "readout" if "readout" not in used else "readout_"

    def cuba(p: Population, spiking: bool, index: int | None) -> Any:
        n = p.size
        a_s = chip.decay_factor(p.dash_syn)
        full = lambda v: np.full(n, float(v), dtype=np.float64)  # noqa: E731
        bias = np.zeros(n) if p.bias is None else np.asarray(p.bias, dtype=np.float64)
        common = dict(tau_syn=full(dt * 2.0 ** p.dash_syn), tau_mem=full(dt * 2.0 ** p.dash_mem),
                      r=full(2.0 ** p.dash_mem), v_leak=bias * 2.0 ** p.dash_mem, w_in=full(a_s * 2.0 ** p.dash_syn))
        meta = {"aspen": {"dash_syn": int(p.dash_syn), "dash_mem": int(p.dash_mem)}}
        if not spiking:
            return nir.CubaLI(**common, metadata=meta)
        meta["aspen"].update(reset="subtractive", max_spikes=chip.MAX_HIDDEN_SPIKES_PER_STEP, index=int(index))
        return nir.CubaLIF(**common, v_threshold=full(p.threshold), v_reset=np.zeros(n), metadata=meta)

    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([net.n_in]))}
    for k, p in enumerate(net.populations):
        nodes[names[k]] = cuba(p, True, k)
    nodes[r_name] = cuba(net.readout, False, None)
    nodes["output"] = nir.Output(output_type=np.array([net.readout.size]))
    edges: list[tuple[str, str]] = [(r_name, "output")]
    label = lambda x: "input" if x == INPUT else (r_name if x == READOUT else names[int(x)])  # noqa: E731
    for k, e in enumerate(net.edges):
        lin = f"w{k}_{label(e.src)}_to_{label(e.dst)}"
        nodes[lin] = nir.Linear(weight=np.asarray(e.weight, dtype=np.float64).T.copy())
        edges += [(label(e.src), lin), (lin, label(e.dst))]
    meta = {"aspen": {"format": FORMAT, "dt": dt, "name": net.name}}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


# ---- files and run directories ---------------------------------------------------------------


def write_graph(graph: Any, path: str | Path) -> Path:
    """Write a NIR graph atomically (temporary file, then rename)."""
    nir = _nir()
    return atomic_write(path, lambda tmp: nir.write(tmp, graph))


def export_nir(model: Any, path: str | Path, approximate: bool = False) -> Path:
    """Write ``model`` (anything with ``to_chipnet``, a loaded `Run`, or a `ChipNet`) as ``path``.

    ``approximate`` is passed to models whose conversion can approximate (``stc_lif``); models
    the chip cannot express raise `DesignRuleError` with their reasons.
    """
    net = as_chipnet(model, approximate)
    return write_graph(chipnet_to_graph(net), path)


def import_nir(path: str | Path, out_dir: str | Path, *, graph_dt: float | None = None, approximate: bool = False,
               data: Any = None, check: bool = True) -> Path:
    """``MODEL.nir`` -> a run directory that `aspen export/check/simulate/sweep` accept.

    Writes ``settings.json`` (model ``chipnet``, its structure), ``checkpoint.pt`` (weights),
    ``import.json`` (source, notes on every approximation) and, with ``data`` (an
    `EventData`), ``metrics.json`` with the float test accuracy. With ``check`` the network is
    quantized once and design-rule checked first, so a graph the chip cannot hold is refused
    (`DesignRuleError`) before anything is written. Refuses an existing ``out_dir`` that
    already holds a run.
    """
    import torch

    from aspen_deploy.quantize import quantize
    from aspen_deploy.train import TrainSettings, evaluate
    from models.chipnet_model import ChipNetModel

    src = Path(path)
    out = Path(out_dir)
    if (out / "settings.json").exists() or (out / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a run; choose another --out")
    imp = graph_to_chipnet(read_graph(src), graph_dt=graph_dt, approximate=approximate, name=src.stem)
    net = imp.chipnet
    net.metadata["nir_import"]["source"] = str(src)
    if check:
        quantize(net)  # raises DesignRuleError with every limit the chip would break
    if data is not None and data.train.x.shape[-1] != net.n_in:
        raise ValueError(f"{src} expects {net.n_in} input channels but the data has {data.train.x.shape[-1]}")
    model = ChipNetModel.from_chipnet(net)
    settings = TrainSettings(model="chipnet", net=model.spec.to_dict(), epochs=0,
                             data=dict(data.spec) if data is not None else {},
                             frontend=data.frontend.to_dict() if data is not None else {})
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "settings.json", asdict(settings))
    checkpoint = {"model": model.state_dict(), "settings": asdict(settings)}
    atomic_write(out / "checkpoint.pt", lambda tmp: torch.save(checkpoint, tmp))
    atomic_write_json(out / "import.json", {"source": str(src), "graph_dt": graph_dt, "approximate": approximate,
                                            "exact": imp.exact, "notes": imp.notes,
                                            "n_hidden": net.n_hidden, "n_in": net.n_in, "n_out": net.readout.size})
    if data is not None:
        model.eval()
        test = evaluate(model, data.test.x, data.test.y)
        atomic_write_json(out / "metrics.json", {"float_test_accuracy": test["accuracy"],
                                                 "float_test_hidden_spikes_per_window": test["hidden_spikes_per_window"],
                                                 "imported_from": str(src), "test_windows": len(data.test.y)})
    return out


def import_notes(run_dir: str | Path) -> list[str]:
    """The approximation notes `import_nir` recorded for a run directory (empty when exact)."""
    p = Path(run_dir) / "import.json"
    return list(json.loads(p.read_text()).get("notes", [])) if p.is_file() else []


__all__ = ["NirImport", "NirFormatError", "graph_to_chipnet", "chipnet_to_graph", "read_graph", "write_graph",
           "export_nir", "import_nir", "import_notes"]
