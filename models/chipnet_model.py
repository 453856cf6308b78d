"""A trainable float network built from any `ChipNet`, plus the pieces the layered models share.

`ChipNetModel` simulates a `aspen_deploy.ir.ChipNet` with the chip-faithful LIF core of
`models.lif`: every population is a group of Xylo IMU neurons (bit-shift decays, subtractive
reset, up to 31 spikes per step, 16-bit saturation), every edge a dense float weight block.
It is what a NIR import becomes (`aspen_deploy.nir_io`) and the "merged" float network of
`models.mpsl`; since quantization maps the same `ChipNet`, this model is the float reference
of whatever ends up on the chip.

Semantics, per population p with decays alpha = 1 - 2**-dash and threshold theta_p (float):

    I_p(t) = sum_{input edges e} x(t) @ W_e  +  sum_{hidden edges e} s_src(t - 1) @ W_e
    a_p(t) = alpha_syn,p * clip(a_p(t - 1) + I_p(t))
    u_p(t) = clip(alpha_mem,p * v_p(t - 1) + a_p(t) + b_p)
    s_p(t) = min(floor(u_p(t) / (theta_p * k)), 31) if u_p(t) >= theta_p * k else 0
    v_p(t) = u_p(t) - s_p(t) * theta_p * k

with ``k`` the ASPEN threshold scale (`set_threshold`, 1.0 nominal; it is what the chip's
`XyloConfig.with_threshold_scale` does to the integer thresholds) and ``clip`` at
``+-STATE_LIMIT * theta_p`` (quantization maps theta_p to 4096, so 32767 is 8 theta_p).
A hop from population to population (and to the readout) costs one step, input to
population none, as on the chip. The readout is non-spiking (`models.lif.leaky_readout`);
logits are its membrane averaged over the last 3/4 of the window divided by its DC gain.

When every hidden edge goes forward in chip order (src < dst) the populations are run one
after the other with the fused scan `models.lif.lif_scan`; otherwise (recurrent or backward
edges) all populations advance together, one step at a time.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import numpy as np
import rockpool.parameters as rp
import torch
from rockpool.nn.modules import TorchModule

from aspen_deploy import chip
from aspen_deploy.backends.base import readout_skip_steps  # numpy only: loads no backend
from aspen_deploy.ir import INPUT, READOUT, ChipNet, Edge, Population
from models.lif import LIFParams, LIFState, leaky_readout, lif_scan, lif_step
from models.spec import LayeredSpec, SpecError, refuse_unknown_fields

STATE_LIMIT = 8.0  # float saturation at threshold 1.0 (32767 / 4096)


# ---- shared helpers --------------------------------------------------------------------------


def delay_one_step(x: torch.Tensor) -> torch.Tensor:
    """Shift (B, T, N) one step later along T (the chip's per-hop latency)."""
    return torch.nn.functional.pad(x, (0, 0, 1, 0))[:, :-1]


def readout_gain(dash_syn: int, dash_mem: int) -> float:
    """DC gain of the non-spiking readout: alpha_s / (1 - alpha_s) / (1 - alpha_m)."""
    a_s, a_m = chip.decay_factor(dash_syn), chip.decay_factor(dash_mem)
    return a_s / (1.0 - a_s) / (1.0 - a_m)


def logits_from_membrane(v: torch.Tensor, gain: float) -> torch.Tensor:
    """(B, T, C) readout membrane -> (B, C): mean over the last 3/4 of T (the steps the chip's
    prediction reads, `aspen_deploy.backends.base.readout_skip_steps`), divided by the DC gain."""
    return v[:, readout_skip_steps(v.shape[1]):].mean(1) / gain


def uniform_init(fan_in: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform weights with std 1 / sqrt(fan_in)."""
    bound = (3.0 / max(fan_in, 1)) ** 0.5
    return torch.empty(shape).uniform_(-bound, bound)


def chip_lif_params(dash_syn: int, dash_mem: int, bias: torch.Tensor, max_spikes: float,
                    threshold: float = 1.0) -> LIFParams:
    """`LIFParams` of chip neurons: bit-shift decays, saturation at ``STATE_LIMIT * threshold``."""
    return LIFParams(chip.decay_factor(int(dash_syn)), chip.decay_factor(int(dash_mem)), bias,
                     STATE_LIMIT * threshold, float(max_spikes))


def dash_from_alpha(alpha: float) -> int:
    """Nearest bit-shift decay to a float decay factor: round(-log2(1 - alpha)), clipped to 1..15."""
    alpha = float(alpha)
    if alpha >= 1.0:
        return chip.DASH_MAX
    if alpha <= 0.0:
        return chip.DASH_MIN
    return int(min(max(round(-math.log2(1.0 - alpha)), 1), chip.DASH_MAX))


def threshold_tensor(theta: float | torch.Tensor) -> torch.Tensor:
    """A threshold (scalar or (B, 1)) as a float32 tensor of >= 2 dims that broadcasts against (B, N)."""
    t = torch.as_tensor(theta, dtype=torch.float32)
    while t.dim() < 2:
        t = t.unsqueeze(0)
    return t


class _AuxLoss(torch.autograd.Function):
    """Identity on ``logits`` whose backward also gives ``aux`` the gradient 1.

    With it a model adds a training-only term to whatever loss the caller builds from the
    logits (``loss.backward()`` then behaves as for ``loss + aux``), without a hook in the
    training loop. Used by `models.mps` for the TASG loss.
    """

    @staticmethod
    def forward(ctx, logits, aux):  # type: ignore[override]
        ctx.aux_shape = aux.shape
        return logits.view_as(logits)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        return grad, grad.new_ones(ctx.aux_shape)


def attach_aux_loss(logits: torch.Tensor, aux: torch.Tensor) -> torch.Tensor:
    """``logits`` unchanged; ``aux`` joins the loss with weight 1 at ``backward`` (see `_AuxLoss`)."""
    return _AuxLoss.apply(logits, aux)


# ---- the layered models' chain (spec: `models.spec.LayeredSpec`) -----------------------------


def layered_chipnet(name: str, spec: LayeredSpec, weights: list[np.ndarray], readout_w: np.ndarray,
                    pops: list[Population], readout_bias: np.ndarray, extra_edges: Iterable[Edge] = (),
                    metadata: dict | None = None) -> ChipNet:
    """A chain INPUT -> pop0 -> ... -> popL-1 -> READOUT (plus ``extra_edges``) as a `ChipNet`."""
    edges = [Edge(INPUT if k == 0 else k - 1, k, np.asarray(w, dtype=np.float64)) for k, w in enumerate(weights)]
    edges += list(extra_edges)
    edges.append(Edge(len(pops) - 1, READOUT, np.asarray(readout_w, dtype=np.float64)))
    readout = Population("readout", spec.n_out, chip.dash_from_tau(spec.tau_syn_out_s, spec.dt),
                         chip.dash_from_tau(spec.tau_mem_out_s, spec.dt), 1.0,
                         np.asarray(readout_bias, dtype=np.float64))
    return ChipNet(spec.n_in, pops, edges, readout, dt=spec.dt, name=name, metadata=dict(metadata or {}))


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# ---- ChipNetModel ----------------------------------------------------------------------------


@dataclass
class ChipNetSpec:
    """Structure of a `ChipNet` (weights and biases live in the model's parameters)."""

    n_in: int
    populations: list[dict]  # name, size, dash_syn, dash_mem, threshold
    edges: list[list]  # [src, dst] with src "input" or an index, dst an index or "readout"
    readout: dict  # name, size, dash_syn, dash_mem
    dt: float = chip.DT_S
    name: str = "chipnet"
    max_spikes: int = chip.MAX_HIDDEN_SPIKES_PER_STEP
    metadata: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "ChipNetSpec":
        if not d:
            raise SpecError("a chipnet model needs its structure (settings.json 'net'); it is made by "
                            "'aspen import MODEL.nir' or from another model's to_chipnet(), not trained from scratch")
        refuse_unknown_fields(cls, d, list_known=False)
        try:
            return cls(**d)
        except TypeError as e:
            raise SpecError(f"incomplete ChipNetSpec: {e}") from None

    @classmethod
    def of(cls, net: ChipNet) -> "ChipNetSpec":
        pops = [{"name": p.name, "size": int(p.size), "dash_syn": int(p.dash_syn), "dash_mem": int(p.dash_mem),
                 "threshold": float(p.threshold)} for p in net.populations]
        edges = [[e.src if e.src == INPUT else int(e.src), e.dst if e.dst == READOUT else int(e.dst)] for e in net.edges]
        r = net.readout
        readout = {"name": r.name, "size": int(r.size), "dash_syn": int(r.dash_syn), "dash_mem": int(r.dash_mem)}
        return cls(int(net.n_in), pops, edges, readout, float(net.dt), net.name, metadata=_jsonable(net.metadata))


def _jsonable(d: Any) -> Any:
    """Metadata as plain JSON types (settings.json must stay readable)."""
    if isinstance(d, dict):
        return {str(k): _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    if isinstance(d, np.ndarray):
        return d.tolist()
    if isinstance(d, (np.integer,)):
        return int(d)
    if isinstance(d, (np.floating,)):
        return float(d)
    return d


class ChipNetModel(TorchModule):
    """Float simulation of a `ChipNet` (equations in the module docstring); trainable, exportable."""

    def __init__(self, spec: ChipNetSpec | dict, *args, **kwargs):
        spec = spec if isinstance(spec, ChipNetSpec) else ChipNetSpec.from_dict(spec)
        super().__init__(shape=(spec.n_in, spec.readout["size"]), *args, **kwargs)
        self.spec = spec
        sizes = [int(p["size"]) for p in spec.populations]
        self._sizes = sizes
        self._edges: list[tuple[Any, Any]] = []
        for k, (src, dst) in enumerate(spec.edges):
            n_src = spec.n_in if src == INPUT else sizes[int(src)]
            n_dst = spec.readout["size"] if dst == READOUT else sizes[int(dst)]
            setattr(self, f"w{k}", rp.Parameter(uniform_init(n_src, (n_src, n_dst)), family="weights"))
            self._edges.append((src, dst))
        for p, n in enumerate(sizes):
            setattr(self, f"b{p}", rp.Parameter(torch.zeros(n), family="biases"))
        self.readout_bias = rp.Parameter(torch.zeros(spec.readout["size"]), family="biases")
        self.threshold: float | torch.Tensor = 1.0
        self.last_hidden_spikes: list[torch.Tensor] = []
        self._feedforward = all(src == INPUT or dst == READOUT or int(src) < int(dst) for src, dst in self._edges)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_chipnet(cls, net: ChipNet) -> "ChipNetModel":
        """A model holding ``net``'s numbers (as float32 parameters)."""
        m = cls(ChipNetSpec.of(net))
        with torch.no_grad():
            for k, e in enumerate(net.edges):
                getattr(m, f"w{k}").copy_(torch.as_tensor(np.asarray(e.weight), dtype=torch.float32))
            for p, pop in enumerate(net.populations):
                if pop.bias is not None:
                    getattr(m, f"b{p}").copy_(torch.as_tensor(np.asarray(pop.bias), dtype=torch.float32))
            if net.readout.bias is not None:
                m.readout_bias.copy_(torch.as_tensor(np.asarray(net.readout.bias), dtype=torch.float32))
        return m

    def to_chipnet(self, approximate: bool = False) -> ChipNet:
        """The `ChipNet` this model simulates (exact: nothing is approximated)."""
        s = self.spec
        pops = [Population(p["name"], int(p["size"]), int(p["dash_syn"]), int(p["dash_mem"]), float(p["threshold"]),
                           np64(getattr(self, f"b{k}"))) for k, p in enumerate(s.populations)]
        edges = [Edge(src, dst, np64(getattr(self, f"w{k}"))) for k, (src, dst) in enumerate(self._edges)]
        r = s.readout
        readout = Population(r["name"], int(r["size"]), int(r["dash_syn"]), int(r["dash_mem"]), 1.0,
                             np64(self.readout_bias))
        return ChipNet(s.n_in, pops, edges, readout, dt=s.dt, name=s.name, metadata=dict(s.metadata))

    # -- ASPEN contract -------------------------------------------------------------------------
    def set_threshold(self, theta: float | torch.Tensor) -> None:
        """Scale of every population's threshold for the next forward passes (scalar or (B, 1))."""
        self.threshold = theta

    def _lif_params(self, p: int) -> tuple[LIFParams, float]:
        pop = self.spec.populations[p]
        th = float(pop["threshold"])
        return chip_lif_params(pop["dash_syn"], pop["dash_mem"], getattr(self, f"b{p}"), self.spec.max_spikes, th), th

    def readout_membrane(self, events: torch.Tensor) -> torch.Tensor:
        """(B, T, n_in) event counts -> (B, T, C) readout membrane; keeps `last_hidden_spikes`."""
        x = events.to(torch.float32)
        spikes = self._hidden_feedforward(x) if self._feedforward else self._hidden_stepwise(x)
        self.last_hidden_spikes = spikes
        i_out = x.new_zeros(x.shape[0], x.shape[1], self.spec.readout["size"])
        for k, (src, dst) in enumerate(self._edges):
            if dst == READOUT:
                if src == INPUT:  # refused by the importer; kept so the model never silently ignores it
                    raise ValueError("an input -> readout edge has no Xylo equivalent")
                i_out = i_out + delay_one_step(spikes[int(src)]) @ getattr(self, f"w{k}")
        r = self.spec.readout
        return leaky_readout(i_out, chip.decay_factor(int(r["dash_syn"])), chip.decay_factor(int(r["dash_mem"])),
                             self.readout_bias)

    def _hidden_feedforward(self, x: torch.Tensor) -> list[torch.Tensor]:
        theta = threshold_tensor(self.threshold)
        spikes: list[torch.Tensor] = []
        for p, n in enumerate(self._sizes):
            cur = x.new_zeros(x.shape[0], x.shape[1], n)
            for k, (src, dst) in enumerate(self._edges):
                if dst == READOUT or int(dst) != p:
                    continue
                pre = x if src == INPUT else delay_one_step(spikes[int(src)])
                cur = cur + pre @ getattr(self, f"w{k}")
            params, th = self._lif_params(p)
            spikes.append(lif_scan(cur, params, theta * th))
        return spikes

    def _hidden_stepwise(self, x: torch.Tensor) -> list[torch.Tensor]:
        theta = threshold_tensor(self.threshold)
        b, t_len, _ = x.shape
        params = [self._lif_params(p) for p in range(len(self._sizes))]
        # input currents for the whole window at once (no recurrence involved)
        cur_in = [x.new_zeros(b, t_len, n) for n in self._sizes]
        for k, (src, dst) in enumerate(self._edges):
            if src == INPUT and dst != READOUT:
                cur_in[int(dst)] = cur_in[int(dst)] + x @ getattr(self, f"w{k}")
        hid = [(int(src), int(dst), getattr(self, f"w{k}")) for k, (src, dst) in enumerate(self._edges)
               if src != INPUT and dst != READOUT]
        states = [LIFState(x.new_zeros(b, n), x.new_zeros(b, n)) for n in self._sizes]
        prev = [x.new_zeros(b, n) for n in self._sizes]
        out: list[list[torch.Tensor]] = [[] for _ in self._sizes]
        for t in range(t_len):
            cur = [c[:, t] for c in cur_in]
            for src, dst, w in hid:
                cur[dst] = cur[dst] + prev[src] @ w
            for p in range(len(self._sizes)):
                s, states[p] = lif_step(cur[p], states[p], params[p][0], theta * params[p][1])
                out[p].append(s)
            prev = [o[-1] for o in out]
        return [torch.stack(o, 1) for o in out]

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        return logits_from_membrane(self.readout_membrane(events), self.readout_gain)

    @property
    def readout_gain(self) -> float:
        return readout_gain(int(self.spec.readout["dash_syn"]), int(self.spec.readout["dash_mem"]))


# ---- base of the layered models (mpsl, mps, stc_lif) -----------------------------------------


class LayeredNet(TorchModule):
    """n_in -> hidden... -> C: feed-forward weights ``w{k}``, biases ``b{k}``, a non-spiking readout.

    Subclasses define the hidden dynamics in `hidden_spikes`; this class provides the ASPEN
    contract around it (threshold, readout membrane, logits, hidden-spike record). Hidden
    layer k > 0 sees layer k - 1's spikes one step later, and the readout sees the last
    layer's one step later, as on the chip.
    """

    def __init__(self, spec: LayeredSpec, *args, **kwargs):
        super().__init__(shape=(spec.n_in, spec.n_out), *args, **kwargs)
        self.spec = spec
        sizes = (spec.n_in, *spec.hidden)
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"w{k}", rp.Parameter(uniform_init(a, (a, b)), family="weights"))
            setattr(self, f"b{k}", rp.Parameter(torch.zeros(b), family="biases"))
        self.w_out = rp.Parameter(uniform_init(spec.hidden[-1], (spec.hidden[-1], spec.n_out)), family="weights")
        self.readout_bias = rp.Parameter(torch.zeros(spec.n_out), family="biases")
        self.dash_syn = chip.dash_from_tau(spec.tau_syn_s, spec.dt)
        self.dash_mem = chip.dash_from_tau(spec.tau_mem_s, spec.dt)
        self.readout_dash_syn = chip.dash_from_tau(spec.tau_syn_out_s, spec.dt)
        self.readout_dash_mem = chip.dash_from_tau(spec.tau_mem_out_s, spec.dt)
        self.threshold: float | torch.Tensor = 1.0
        self.last_hidden_spikes: list[torch.Tensor] = []

    @property
    def n_layers(self) -> int:
        return len(self.spec.hidden)

    def weight(self, k: int) -> torch.Tensor:
        return getattr(self, f"w{k}")

    def bias(self, k: int) -> torch.Tensor:
        return getattr(self, f"b{k}")

    def set_threshold(self, theta: float | torch.Tensor) -> None:
        """Hidden threshold for the next forward passes (scalar, or (B, 1) per sample)."""
        self.threshold = theta

    def hidden_spikes(self, x: torch.Tensor) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def layer_inputs(self, k: int, x: torch.Tensor, spikes: list[torch.Tensor]) -> torch.Tensor:
        """Presynaptic activity of hidden layer k: the events (same step) or layer k-1 (one step later)."""
        return x if k == 0 else delay_one_step(spikes[k - 1])

    def readout_membrane(self, events: torch.Tensor) -> torch.Tensor:
        x = events.to(torch.float32)
        spikes = self.hidden_spikes(x)
        self.last_hidden_spikes = spikes
        i_out = delay_one_step(spikes[-1]) @ self.w_out
        return leaky_readout(i_out, chip.decay_factor(self.readout_dash_syn), chip.decay_factor(self.readout_dash_mem),
                             self.readout_bias)

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        return logits_from_membrane(self.readout_membrane(events), self.readout_gain)

    @property
    def readout_gain(self) -> float:
        return readout_gain(self.readout_dash_syn, self.readout_dash_mem)

    def lif_params(self, k: int) -> LIFParams:
        return chip_lif_params(self.dash_syn, self.dash_mem, self.bias(k), self.spec.max_spikes)

    def chain_chipnet(self, name: str, weights: list[torch.Tensor], pops: list[Population],
                      extra_edges: Iterable[Edge] = (), metadata: dict | None = None) -> ChipNet:
        """`layered_chipnet` with this model's readout."""
        return layered_chipnet(name, self.spec, [np64(w) for w in weights], np64(self.w_out), pops,
                               np64(self.readout_bias), extra_edges, metadata)


def evaluate_logits(net: Any, x: np.ndarray, threshold: float = 1.0, batch: int = 256) -> tuple[np.ndarray, float]:
    """(N, C) logits of ``net`` on event windows at a hidden threshold, and hidden spikes per window."""
    outs, spikes = [], 0.0
    net.set_threshold(torch.tensor(float(threshold)))
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(net(torch.as_tensor(np.asarray(x[i:i + batch]), dtype=torch.float32))[0].numpy())
            spikes += float(sum(s.sum() for s in net.last_hidden_spikes))
    net.set_threshold(1.0)
    return np.concatenate(outs), spikes / max(len(x), 1)


def conversion_report(net: Any, chipnet: ChipNet, x: np.ndarray, y: np.ndarray, threshold: float = 1.0,
                      net_logits: tuple[np.ndarray, float] | None = None) -> dict[str, Any]:
    """Float accuracy of ``net`` and of its conversion ``chipnet`` (as a `ChipNetModel`) on the same windows.

    What an approximate conversion costs before quantization: ``accuracy_change`` = converted -
    original, and how often the two predict the same class. ``net_logits``: ``net``'s
    `evaluate_logits` on ``x`` at ``threshold`` in eval mode, when the caller already has it.
    """
    conv = ChipNetModel.from_chipnet(chipnet)
    conv.eval()
    if net_logits is None:
        was_training = getattr(net, "training", False)
        net.eval()
        net_logits = evaluate_logits(net, x, threshold)
        if was_training:
            net.train()
    a_logits, a_spikes = net_logits
    b_logits, b_spikes = evaluate_logits(conv, x, threshold)
    y = np.asarray(y)
    acc_a = float((a_logits.argmax(-1) == y).mean())
    acc_b = float((b_logits.argmax(-1) == y).mean())
    return {"model_accuracy": acc_a, "converted_accuracy": acc_b, "accuracy_change": acc_b - acc_a,
            "prediction_agreement": float((a_logits.argmax(-1) == b_logits.argmax(-1)).mean()),
            "model_hidden_spikes_per_window": a_spikes, "converted_hidden_spikes_per_window": b_spikes,
            "windows": int(len(y))}
