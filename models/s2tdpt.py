"""S2TDPT: a small spiking transformer with STDP-timing attention (arXiv 2511.14691), for IMU windows.

The window (B, T, 15) is cut into N tokens of L = T / N steps. All spiking layers are the
chip's LIF neurons (`models.lif.lif_scan`), with the ASPEN threshold:

    E = LIF(x @ W_e)                                  embedding spikes (B, T, D)
    Q, K, V = LIF(E @ W_q), LIF(E @ W_k), LIF(E @ W_v)
    per token i and channel d:  q_id = spike count of Q in token i,
                                tq_id = mean spike time of Q in token i (in steps, absolute)
    (same for K, V: k_jd, tk_jd, v_jd)
    STDP-timing attention:  A_ij = 1/D sum_d q_id k_jd kappa(tq_id - tk_jd)
        kappa(dt) = A_plus exp(-dt / tau_plus)        if dt >= 0  (key spike before query: potentiate)
                  = -A_minus exp(dt / tau_minus)      if dt < 0   (key after query: depress)
    O_i = 1/N sum_j A_ij v_j                          (no softmax, as in spiking transformers)
    Z = LIF over tokens (O @ W_o + counts(E))         attention block with residual
    M = LIF over tokens (LIF over tokens(Z @ W_1) @ W_2 + Z)   MLP block with residual
    logits = mean_i(M_i) @ W_c + b_c

Token-level LIFs run over the N tokens as their time steps. The readout is a linear read of
mean token activity, so `readout_membrane` (B, T, C) holds each token's logits over its steps
(the contract's shape; the model has no per-step membrane).

Xylo cannot run this (`to_chipnet` raises `DesignRuleError` with every reason): the attention
weights A_ij are computed from activity at run time (the chip's weights are fixed at
configuration time); A_ij and A @ V multiply activities (chip neurons only add weighted
events); spike times are divided by counts; and the token-level layers share one weight set
across the N tokens, which on the chip means N copies of every neuron and weight. The
budgets it would need are reported with the checker's rule ids (`token_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

import rockpool.parameters as rp
import torch
from rockpool.nn.modules import TorchModule

from aspen_deploy import chip
from aspen_deploy.drc import DesignRuleError, Violation
from models.chipnet_model import STATE_LIMIT, threshold_tensor, uniform_init
from models.lif import LIFParams, lif_scan
from models.spec import LayeredSpec, SpecError


@dataclass
class S2TDPTSpec(LayeredSpec):
    hidden: tuple[int, ...] = (32,)  # model width D (one entry)
    n_tokens: int = 16
    mlp_ratio: int = 2
    a_plus: float = 1.0
    a_minus: float = 0.5
    tau_plus_steps: float = 32.0
    tau_minus_steps: float = 32.0
    token_tau_mem_s: float = 0.01  # leak of the token-level LIFs (one token = one of their steps)

    def check(self) -> None:
        super().check()
        if len(self.hidden) != 1:
            raise SpecError(f"s2tdpt takes one width in hidden (the model dimension D), got {self.hidden}")
        if self.n_tokens < 1 or self.mlp_ratio < 1:
            raise SpecError("s2tdpt needs n_tokens >= 1 and mlp_ratio >= 1")

    @property
    def width(self) -> int:
        return self.hidden[0]


class S2TDPTNet(TorchModule):
    """Spiking transformer with STDP-timing attention (module docstring)."""

    def __init__(self, spec: S2TDPTSpec | None = None, *args, **kwargs):
        spec = spec or S2TDPTSpec()
        super().__init__(shape=(spec.n_in, spec.n_out), *args, **kwargs)
        self.spec = spec
        d, h = spec.width, spec.width * spec.mlp_ratio
        shapes = {"w_e": (spec.n_in, d), "w_q": (d, d), "w_k": (d, d), "w_v": (d, d), "w_o": (d, d),
                  "w_1": (d, h), "w_2": (h, d), "w_c": (d, spec.n_out)}
        for name, shp in shapes.items():
            setattr(self, name, rp.Parameter(uniform_init(shp[0], shp), family="weights"))
        for name, n in (("b_e", d), ("b_q", d), ("b_k", d), ("b_v", d), ("b_o", d), ("b_1", h), ("b_2", d),
                        ("b_c", spec.n_out)):
            setattr(self, name, rp.Parameter(torch.zeros(n), family="biases"))
        self.dash_syn = chip.dash_from_tau(spec.tau_syn_s, spec.dt)
        self.dash_mem = chip.dash_from_tau(spec.tau_mem_s, spec.dt)
        self.token_dash_mem = chip.dash_from_tau(spec.token_tau_mem_s, spec.dt)
        self.threshold: float | torch.Tensor = 1.0
        self.last_hidden_spikes: list[torch.Tensor] = []

    def set_threshold(self, theta: float | torch.Tensor) -> None:
        self.threshold = theta

    def _lif(self, cur: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor, token_level: bool = False) -> torch.Tensor:
        a_s = 0.5 if token_level else chip.decay_factor(self.dash_syn)  # tokens: shortest synaptic filter
        a_m = chip.decay_factor(self.token_dash_mem if token_level else self.dash_mem)
        return lif_scan(cur, LIFParams(a_s, a_m, bias, STATE_LIMIT, float(self.spec.max_spikes)), theta)

    def _tokens(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) spikes -> counts (B, N, D) and count-weighted mean spike times (B, N, D) in steps."""
        b, t_len, d = s.shape
        n = self.spec.n_tokens
        L = t_len // n
        if L < 1:
            raise ValueError(f"s2tdpt needs windows of at least n_tokens={n} steps, got {t_len}")
        seg = s[:, :n * L].reshape(b, n, L, d)
        t_abs = torch.arange(n * L, dtype=s.dtype).reshape(1, n, L, 1)
        counts = seg.sum(2)
        times = (seg * t_abs).sum(2) / counts.clamp_min(1e-6)
        return counts, times

    def _stdp_kernel(self, dt: torch.Tensor) -> torch.Tensor:
        sp = self.spec
        return torch.where(dt >= 0, sp.a_plus * torch.exp(-dt.clamp_min(0) / sp.tau_plus_steps),
                           -sp.a_minus * torch.exp(dt.clamp_max(0) / sp.tau_minus_steps))

    def _run(self, events: torch.Tensor) -> torch.Tensor:
        """(B, T, 15) -> per-token logits (B, N, C); records hidden spikes."""
        x = events.to(torch.float32)
        theta = threshold_tensor(self.threshold)
        e = self._lif(x @ self.w_e, self.b_e, theta)
        q = self._lif(e @ self.w_q, self.b_q, theta)
        k = self._lif(e @ self.w_k, self.b_k, theta)
        v = self._lif(e @ self.w_v, self.b_v, theta)
        (qc, qt), (kc, kt), (vc, _), (ec, _) = self._tokens(q), self._tokens(k), self._tokens(v), self._tokens(e)
        n, d = qc.shape[1], qc.shape[2]
        dt = qt.unsqueeze(2) - kt.unsqueeze(1)  # (B, N_query, N_key, D)
        attn = (qc.unsqueeze(2) * kc.unsqueeze(1) * self._stdp_kernel(dt)).sum(-1) / d  # (B, N, N)
        o = attn @ vc / n
        z = self._lif(o @ self.w_o + ec, self.b_o, theta, token_level=True)
        h = self._lif(z @ self.w_1, self.b_1, theta, token_level=True)
        m = self._lif(h @ self.w_2 + z, self.b_2, theta, token_level=True)
        self.last_hidden_spikes = [e, q, k, v, z, h, m]
        return m @ self.w_c + self.b_c

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        tok = self._run(events)
        return tok.mean(1)

    def readout_membrane(self, events: torch.Tensor) -> torch.Tensor:
        """(B, T, C): each token's logits held over its steps (see module docstring)."""
        tok = self._run(events)
        t_len = events.shape[1]
        L = t_len // self.spec.n_tokens
        v = tok.repeat_interleave(L, dim=1)
        return torch.nn.functional.pad(v, (0, 0, 0, t_len - v.shape[1]), mode="replicate") if v.shape[1] < t_len else v

    def token_budget(self) -> dict[str, int]:
        """Neurons and weights a Xylo implementation would need with every token unrolled in space."""
        sp = self.spec
        d, h, n = sp.width, sp.width * sp.mlp_ratio, sp.n_tokens
        per_token_neurons = 3 * d + d + h + d  # stored q, k, v of a token; attention out; MLP hidden and out
        neurons = d + 3 * d + n * per_token_neurons  # shared E and Q/K/V populations + unrolled tokens
        shared_weights = 3 * d * d  # E -> Q, K, V
        token_weights = n * (d * d + d * h + h * d + d * d)  # W_o, W_1, W_2 and the residual, per token
        attention_pairs = n * n * d  # one q-k product per token pair and channel
        return {"hidden_neurons": neurons, "hidden_weights": shared_weights + token_weights,
                "attention_products": attention_pairs, "input_neurons": d, "tokens": n}

    def refusal(self) -> list[Violation]:
        """Every reason Xylo cannot run this model, with the budgets it would need."""
        b = self.token_budget()
        where = "s2tdpt attention"
        out = [
            Violation("unsupported", "synaptic weights fixed at configuration time",
                      f"attention weights A_ij recomputed every window from query/key spike timing "
                      f"({b['tokens']} x {b['tokens']} per window)", where),
            Violation("unsupported", "neurons that add weighted input events",
                      f"multiplicative interactions: {b['attention_products']} query-key products per window, "
                      f"A @ V, and spike times divided by spike counts", where),
            Violation("unsupported", "one weight per synapse (no weight sharing)",
                      f"token-level weights shared across {b['tokens']} tokens (W_o, W_1, W_2)",
                      "s2tdpt token layers", "unrolled, every token needs its own copy of those neurons and weights"),
        ]
        if b["hidden_neurons"] > chip.MAX_HIDDEN:
            out.append(Violation("hidden-neurons", chip.MAX_HIDDEN, f"{b['hidden_neurons']} hidden neurons",
                                 f"s2tdpt unrolled over {b['tokens']} tokens"))
        if b["hidden_weights"] > chip.MAX_RECURRENT_WEIGHTS:
            out.append(Violation("recurrent-weights", chip.MAX_RECURRENT_WEIGHTS,
                                 f"{b['hidden_weights']} hidden->hidden weights",
                                 f"s2tdpt unrolled over {b['tokens']} tokens"))
        if b["input_neurons"] > chip.MAX_INPUT_EXPANSION:
            out.append(Violation("input-expansion", chip.MAX_INPUT_EXPANSION,
                                 f"{b['input_neurons']} hidden neurons receiving input", "s2tdpt embedding"))
        return out

    def to_chipnet(self, approximate: bool = False):
        """Always refused, with every reason (``approximate`` cannot help: nothing here has a fixed-weight form)."""
        raise DesignRuleError(self.refusal())
