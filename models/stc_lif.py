"""STC-LIF: autaptic spatio-temporal circuit LIF (arXiv 2406.00405) on the chip's neuron.

Hidden layer k has n neurons in G groups (``groups``). From the previous step's spikes s(t-1)
two modulation factors are computed per neuron i, with g_i(t) the mean spike count of i's group:

    beta_i(t)  = sigmoid(logit(alpha_mem) + a_i g_i(t))     the membrane leak, scaled by activity
    gamma_i(t) = tanh(c_i + e_i g_i(t))                     gain of the within-layer pathway

and the neuron is the chip's LIF with them inserted:

    a(t) = alpha_syn clip(a(t-1) + P(t) @ W + gamma(t) * (s(t-1) @ (M * W_g)))
    u(t) = clip(beta(t) * v(t-1) + a(t) + b)
    n(t) = min(floor(u / theta), 31) if u >= theta;   v(t) = u(t) - n(t) theta

M is the block-diagonal group mask (autapses included): the within-layer (grouped) pathway.
With no activity beta = alpha_mem, the chip's leak. Training runs the layer as one fused scan
(`STCScanFunction`); no gradient flows back in time through s(t-1) where it feeds beta, gamma
and the pathway (their parameters still learn): through 31-spike neurons that loop made the
gradient overflow within one 512-step window.

On Xylo: the within-layer pathway is expressible as recurrent hidden weights (one step late,
into isyn, exactly where it acts here); a leak that changes every step with the spikes is
not (decays are fixed bit shifts), and neither is a weight gain gamma(t) that changes with
them. `to_chipnet()` therefore refuses, naming both per layer. ``to_chipnet(approximate=True)``
replaces beta(t) by the layer's mean leak over training (``beta_mean_k``, a running mean kept
while training, like batch-norm statistics) rounded to a bit-shift decay, and gamma(t) by its
per-neuron training mean: the pathway becomes the recurrent weights ``W_g[j, i] gamma_i``.
`approximation_report` measures the accuracy this costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import rockpool.parameters as rp
import torch

from aspen_deploy import chip
from aspen_deploy.drc import DesignRuleError, Violation
from aspen_deploy.ir import ChipNet, Edge, Population
from models.chipnet_model import (STATE_LIMIT, LayeredNet, conversion_report, dash_from_alpha, np64,
                                  threshold_tensor, uniform_init)
from models.lif import spike, surrogate_grad
from models.spec import LayeredSpec, SpecError

STATS_MOMENTUM = 0.1


@dataclass
class STCSpec(LayeredSpec):
    groups: int = 4  # groups per layer for the within-layer pathway

    def check(self) -> None:
        super().check()
        bad = [h for h in self.hidden if self.groups < 1 or h % self.groups]
        if bad:
            raise SpecError(f"stc_lif groups={self.groups} must divide every hidden layer size, not {bad}")


class STCLIFNet(LayeredNet):
    """Layered network of STC-LIF neurons (module docstring)."""

    def __init__(self, spec: STCSpec | None = None, *args, **kwargs):
        spec = spec or STCSpec()
        super().__init__(spec, *args, **kwargs)
        self.alpha_mem = chip.decay_factor(self.dash_mem)
        for k, n in enumerate(spec.hidden):
            gs = n // spec.groups
            grp = torch.arange(n) // gs
            mask = (grp[:, None] == grp[None, :]).float()
            self.register_buffer(f"mask{k}", mask)
            self.register_buffer(f"pool{k}", mask / gs)  # s @ pool = mean count of each neuron's group
            setattr(self, f"wg{k}", rp.Parameter(uniform_init(gs, (n, n)) * 0.5, family="weights"))
            setattr(self, f"a_beta{k}", rp.Parameter(torch.zeros(n)))
            setattr(self, f"c_gamma{k}", rp.Parameter(torch.full((n,), 0.5)))
            setattr(self, f"e_gamma{k}", rp.Parameter(torch.zeros(n)))
            self.register_buffer(f"beta_mean{k}", torch.full((n,), self.alpha_mem))
            self.register_buffer(f"gamma_mean{k}", torch.tanh(torch.full((n,), 0.5)))

    def _p(self, name: str, k: int) -> torch.Tensor:
        return getattr(self, f"{name}{k}")

    def hidden_spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        theta = threshold_tensor(self.threshold)
        spikes: list[torch.Tensor] = []
        for k in range(self.n_layers):
            cur = self.layer_inputs(k, x, spikes) @ self.weight(k)
            spikes.append(self._layer(k, cur, theta))
        return spikes

    def _layer_inputs(self, k: int) -> tuple:
        a_beta, c_gamma, e_gamma = self._p("a_beta", k), self._p("c_gamma", k), self._p("e_gamma", k)
        return self._p("wg", k) * self._p("mask", k), self._p("pool", k), a_beta, c_gamma, e_gamma

    def _layer(self, k: int, cur: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Spikes (B, T, n) of layer k: the fused scan (`STCScanFunction`); updates the running means in training."""
        w_g, pool, a_beta, c_gamma, e_gamma = self._layer_inputs(k)
        out = STCScanFunction.apply(cur, self.bias(k), theta.to(cur.dtype), w_g, pool, a_beta, c_gamma, e_gamma,
                                    chip.decay_factor(self.dash_syn), self.alpha_mem, STATE_LIMIT,
                                    float(self.spec.max_spikes))
        spikes, beta_mean, gamma_mean = out
        if self.training:
            self._update_stats(k, beta_mean.detach(), gamma_mean.detach())
        return spikes

    @torch.no_grad()
    def _update_stats(self, k: int, beta_mean: torch.Tensor, gamma_mean: torch.Tensor) -> None:
        m = STATS_MOMENTUM
        for name, batch_mean in (("beta_mean", beta_mean), ("gamma_mean", gamma_mean)):
            setattr(self, f"{name}{k}", (1 - m) * self._p(name, k) + m * batch_mean)

    def _layer_reference(self, k: int, cur: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Layer k step by step with plain autograd (the reference the scan is tested against)."""
        b, t_len, n = cur.shape
        a_s = chip.decay_factor(self.dash_syn)
        lim = STATE_LIMIT
        w_g, pool, a_beta, c_gamma, e_gamma = self._layer_inputs(k)
        logit_am = math.log(self.alpha_mem / (1.0 - self.alpha_mem))
        bias = self.bias(k)
        a = cur.new_zeros(b, n)
        v = cur.new_zeros(b, n)
        s = cur.new_zeros(b, n)
        out = []
        for t in range(t_len):
            g = s.detach() @ pool
            beta = torch.sigmoid(logit_am + a_beta * g)
            gamma = torch.tanh(c_gamma + e_gamma * g)
            a = a_s * torch.clamp(a + cur[:, t] + gamma * (s.detach() @ w_g), -lim, lim)
            u = torch.clamp(beta * v + a + bias, -lim, lim)
            s = spike(u, theta, float(self.spec.max_spikes))
            v = u - s.detach() * theta
            out.append(s)
        return torch.stack(out, 1)

    def refusal(self) -> list[Violation]:
        """Why the chip cannot run this model as it is: two reasons per layer."""
        out = []
        for k in range(self.n_layers):
            d = dash_from_alpha(float(self._p("beta_mean", k).mean()))
            out.append(Violation(
                "unsupported", "a fixed bit-shift leak per neuron (v_mem_decay)",
                "a leak beta[t] recomputed every step from the previous step's spikes", f"stc_lif layer hidden{k}",
                f"--approximate fixes it at its training mean (v_mem_decay {d})"))
            out.append(Violation(
                "unsupported", "recurrent weights fixed at configuration time (hidden.weights)",
                "within-layer weights scaled every step by gamma[t] from the previous step's spikes",
                f"stc_lif layer hidden{k}",
                "--approximate fixes gamma at its training mean; the grouped pathway becomes recurrent weights"))
        return out

    def to_chipnet(self, approximate: bool = False) -> ChipNet:
        """Refused (`DesignRuleError`) unless ``approximate``: then fixed leak and gain (module docstring)."""
        if not approximate:
            raise DesignRuleError(self.refusal())
        pops, weights, extra, notes, leaks = [], [], [], [], []
        for k, n in enumerate(self.spec.hidden):
            beta_bar = float(self._p("beta_mean", k).mean())
            d = dash_from_alpha(beta_bar)
            leaks.append({"layer": k, "beta_mean": beta_bar, "dash_mem": d, "alpha_chip": chip.decay_factor(d)})
            notes.append(f"hidden{k}: dynamic leak beta[t] -> fixed {chip.decay_factor(d):.4f} (v_mem_decay {d}; "
                         f"training mean {beta_bar:.4f}); gamma[t] -> per-neuron training mean "
                         f"(mean {float(self._p('gamma_mean', k).mean()):.3f})")
            pops.append(Population(f"hidden{k}", n, self.dash_syn, d, 1.0, np64(self.bias(k))))
            weights.append(self.weight(k).detach())
            w_rec = (self._p("wg", k) * self._p("mask", k) * self._p("gamma_mean", k)[None, :]).detach()
            extra.append(Edge(k, k, np64(w_rec)))
        meta = {"conversion": {"status": "approximate", "model": "stc_lif", "notes": notes, "leaks": leaks}}
        return self.chain_chipnet("stc_lif", weights, pops, extra_edges=extra, metadata=meta)


@torch.jit.script
def _stc_forward(cur: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor, w_g: torch.Tensor, pool: torch.Tensor,
                 a_beta: torch.Tensor, c_gamma: torch.Tensor, e_gamma: torch.Tensor, a_s: float, logit_am: float,
                 lim: float, max_spikes: float):
    b, t_len, n = cur.shape
    a = cur.new_zeros(b, n)
    v = cur.new_zeros(b, n)
    s = cur.new_zeros(b, n)
    spikes = torch.empty_like(cur)
    pa_all = torch.empty_like(cur)
    q_all = torch.empty_like(cur)
    u_all = torch.empty_like(cur)
    vp_all = torch.empty_like(cur)
    beta_all = torch.empty_like(cur)
    gamma_all = torch.empty_like(cur)
    r_all = torch.empty_like(cur)
    g_all = torch.empty_like(cur)
    for t in range(t_len):
        g = s @ pool
        beta = torch.sigmoid(logit_am + a_beta * g)
        gamma = torch.tanh(c_gamma + e_gamma * g)
        r = s @ w_g
        pa = a + cur[:, t] + gamma * r
        a = a_s * torch.clamp(pa, -lim, lim)
        q = beta * v + a + bias
        u = torch.clamp(q, -lim, lim)
        vp_all[:, t] = v
        s = torch.clamp(torch.floor(u / theta), 0.0, max_spikes)
        v = u - s * theta
        spikes[:, t] = s
        pa_all[:, t] = pa
        q_all[:, t] = q
        u_all[:, t] = u
        beta_all[:, t] = beta
        gamma_all[:, t] = gamma
        r_all[:, t] = r
        g_all[:, t] = g
    return spikes, pa_all, q_all, u_all, vp_all, beta_all, gamma_all, r_all, g_all


@torch.jit.script
def _stc_backward(grad_s: torch.Tensor, sg: torch.Tensor, spikes: torch.Tensor, pa_all: torch.Tensor,
                  q_all: torch.Tensor, vp_all: torch.Tensor, beta_all: torch.Tensor, gamma_all: torch.Tensor,
                  r_all: torch.Tensor, g_all: torch.Tensor, w_g: torch.Tensor, a_s: float, lim: float):
    """Reverse scan; ``sg`` (B, T, N) is the surrogate dn/du."""
    b, t_len, n = grad_s.shape
    mask_u = (q_all.abs() < lim).to(sg.dtype)
    mask_a = (pa_all.abs() < lim).to(sg.dtype)
    grad_cur = torch.empty_like(grad_s)
    gv = grad_s.new_zeros(b, n)
    ga = grad_s.new_zeros(b, n)
    gbias = grad_s.new_zeros(b, n)
    g_abeta = grad_s.new_zeros(b, n)
    g_cgamma = grad_s.new_zeros(b, n)
    g_egamma = grad_s.new_zeros(b, n)
    g_wg = w_g.new_zeros(w_g.shape)
    zero = grad_s.new_zeros(b, n)
    for k in range(t_len):
        t = t_len - 1 - k
        gs = grad_s[:, t]
        gq = (gs * sg[:, t] + gv) * mask_u[:, t]
        beta = beta_all[:, t]
        gamma = gamma_all[:, t]
        gbeta = gq * vp_all[:, t]
        gv = gq * beta
        gpa = (gq + ga) * a_s * mask_a[:, t]
        ga = gpa
        grad_cur[:, t] = gpa
        gr = gpa * gamma
        gzb = gbeta * beta * (1.0 - beta)
        gzg = gpa * r_all[:, t] * (1.0 - gamma * gamma)
        g_abeta = g_abeta + gzb * g_all[:, t]
        g_cgamma = g_cgamma + gzg
        g_egamma = g_egamma + gzg * g_all[:, t]
        s_prev = spikes[:, t - 1] if t > 0 else zero
        g_wg = g_wg + s_prev.t() @ gr
        gbias = gbias + gq
    return grad_cur, gbias.sum(0), g_wg, g_abeta.sum(0), g_cgamma.sum(0), g_egamma.sum(0)


class STCScanFunction(torch.autograd.Function):
    """One STC-LIF layer over the window with an explicit backward scan (equations in the module docstring).

    Returns the spikes and the batch means of beta and gamma (no gradient: running statistics).
    The reset term is detached, as in `models.lif`, and so are the previous step's spikes where
    they feed beta, gamma and the within-layer pathway: the parameters of those paths get their
    gradients, but no gradient flows back in time through them. With multi-spike neurons (a
    surrogate of 1/theta over 31 thresholds) that path multiplies the gradient by about its
    loop gain every step and overflowed float32 within one 512-step window on HAPT-like input.
    """

    @staticmethod
    def forward(ctx, cur, bias, theta, w_g, pool, a_beta, c_gamma, e_gamma, a_s, alpha_mem, lim, max_spikes):  # type: ignore[override]
        # theta: (B, 1) or (1, 1), as `threshold_tensor` makes it
        logit_am = math.log(alpha_mem / (1.0 - alpha_mem))
        out = _stc_forward(cur, bias, theta, w_g, pool, a_beta, c_gamma, e_gamma, float(a_s), logit_am, float(lim),
                           float(max_spikes))
        spikes, pa_all, q_all, u_all, vp_all, beta_all, gamma_all, r_all, g_all = out
        ctx.save_for_backward(spikes, pa_all, q_all, u_all, vp_all, beta_all, gamma_all, r_all, g_all, theta, w_g)
        ctx.consts = (float(a_s), float(lim), float(max_spikes))
        beta_mean, gamma_mean = beta_all.mean((0, 1)), gamma_all.mean((0, 1))
        ctx.mark_non_differentiable(beta_mean, gamma_mean)
        return spikes, beta_mean, gamma_mean

    @staticmethod
    def backward(ctx, grad_s, _gb, _gg):  # type: ignore[override]
        spikes, pa_all, q_all, u_all, vp_all, beta_all, gamma_all, r_all, g_all, theta, w_g = ctx.saved_tensors
        a_s, lim, max_spikes = ctx.consts
        sg = surrogate_grad(u_all, theta.unsqueeze(1), max_spikes)
        grad_cur, gbias, g_wg, g_ab, g_cg, g_eg = _stc_backward(grad_s.contiguous(), sg, spikes, pa_all, q_all, vp_all,
                                                                beta_all, gamma_all, r_all, g_all, w_g, a_s, lim)
        return grad_cur, gbias, None, g_wg, None, g_ab, g_cg, g_eg, None, None, None, None


def approximation_report(net: STCLIFNet, x: np.ndarray, y: np.ndarray, threshold: float = 1.0,
                         chipnet: ChipNet | None = None,
                         net_logits: tuple[np.ndarray, float] | None = None) -> dict[str, Any]:
    """Float accuracy of the dynamic model and of its fixed-leak approximation on the same windows.

    ``chipnet`` (``net.to_chipnet(approximate=True)``) and ``net_logits`` (see `conversion_report`)
    spare the work when the caller already has them.
    """
    chipnet = chipnet if chipnet is not None else net.to_chipnet(approximate=True)
    rep = conversion_report(net, chipnet, x, y, threshold, net_logits=net_logits)
    return {"dynamic_accuracy": rep["model_accuracy"], "fixed_accuracy": rep["converted_accuracy"],
            "accuracy_change": rep["accuracy_change"], "prediction_agreement": rep["prediction_agreement"],
            "dynamic_hidden_spikes_per_window": rep["model_hidden_spikes_per_window"],
            "fixed_hidden_spikes_per_window": rep["converted_hidden_spikes_per_window"], "windows": rep["windows"]}
