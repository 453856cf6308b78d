"""MPS: membrane potential smoothing with temporally adjacent subnetwork guidance (arXiv 2502.14218).

Hidden layer k, input current I = P @ W_k (P the presynaptic spikes), fixed leak beta (from
``tau_mem_s``, a bit-shift decay) and a learnable smoothing factor alpha_k = sigmoid(a_k):

    U(t) = beta clip(V(t-1) + I(t) / beta, +-L / (1 - alpha)) raw membrane (LIF charge: beta V + I)
    H(t) = clip(alpha H(t-1) + (1 - alpha) (U(t) + b), +-L)   smoothed membrane
    n(t) = min(floor(H(t) / theta), 31)  if H(t) >= theta     spikes fire on the smoothed potential
    reset = "membrane" (default, the paper's neuron): V(t) = U(t) - n theta, H kept
            "smoothed" (the chip's placement):       V(t) = U(t),          H(t) -= n theta

with L = `STATE_LIMIT` (the chip's 16-bit range in these units, see the conversion; U is
written and saturated the way the chip's isyn is, so the two agree at saturation too).

TASG (training only): with p_t = softmax of the readout at step t (its membrane over the DC
gain, last 3/4 of the window), the loss gains ``tasg_weight * mean_t KL(p_{t+1} || p_t)``, the
later step (which has seen more of the window) guiding the earlier one (p_{t+1} detached). It
enters the loss through `chipnet_model.attach_aux_loss`, so `aspen_deploy.train.train` needs no
hook; `last_tasg_loss` holds its value.

Conversion onto the chip's isyn/vmem pair (`to_chipnet`): isyn <- U and vmem <- H / (1 - alpha).
The chip computes ``a = alpha_syn (a + x')`` and ``v = alpha_mem v + a + bias``, so with
alpha_syn = beta, x' = I / beta (weights W / beta), alpha_mem = alpha, bias = b and the
threshold theta / (1 - alpha), ``a = U`` and ``v = H / (1 - alpha)`` exactly, and 16-bit
saturation at 8 times the nominal threshold is ``+-L`` on H and ``+-L / (1 - alpha)`` on V + I / beta.
What is not exact:

- alpha is rounded to the nearest bit-shift decay 1 - 2**-d (beta is one already), unless the
  model was trained with ``alpha_bitshift`` (the forward pass then uses that rounded alpha,
  the gradient reaching the learnable one straight through);
- where the reset lands: the chip can only reset vmem, i.e. H; isyn (U) is never reset. For
  the paper's neuron (reset on U) this means that after a spike the chip pulls the smoothed
  potential down by theta at once while U keeps its charge, whereas the float neuron lowers U
  and lets H follow by (1 - alpha) theta per step (it may burst for a few steps). A model
  trained with ``reset = "smoothed"`` converts exactly up to the rounding of alpha, and with
  ``alpha_bitshift`` as well, exactly.

`scripts/reproduce_models.py` measures the float-vs-chip agreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rockpool.parameters as rp
import torch

from aspen_deploy import chip
from aspen_deploy.backends.base import readout_skip_steps
from aspen_deploy.ir import ChipNet, Population
from models.chipnet_model import (STATE_LIMIT, LayeredNet, attach_aux_loss, dash_from_alpha, logits_from_membrane,
                                  np64, threshold_tensor)
from models.lif import spike, surrogate_shape
from models.spec import LayeredSpec, SpecError

RESETS = ("membrane", "smoothed")


@dataclass
class MPSSpec(LayeredSpec):
    alpha_init: float = 0.5  # initial smoothing factor of every layer (learnable)
    reset: str = "membrane"
    tasg_weight: float = 0.1
    # forward with the nearest bit-shift alpha (straight-through gradient to the learnable one),
    # so that the chip's rounding changes nothing
    alpha_bitshift: bool = False

    def check(self) -> None:
        super().check()
        if self.reset not in RESETS:
            raise SpecError(f"mps reset must be one of {RESETS}, got {self.reset!r}")
        if not 0.0 < self.alpha_init < 1.0:
            raise SpecError(f"alpha_init must lie in (0, 1), got {self.alpha_init}")


class MPSNet(LayeredNet):
    """Layered network of smoothed-membrane neurons (module docstring)."""

    def __init__(self, spec: MPSSpec | None = None, *args, **kwargs):
        spec = spec or MPSSpec()
        super().__init__(spec, *args, **kwargs)
        logit = math.log(spec.alpha_init / (1.0 - spec.alpha_init))
        # U has no synaptic filter: scale the initial weights by the DC gain that the chip LIF's
        # filter gives in the other models (alpha_syn / (1 - alpha_syn)), so every layer starts active
        a_s = chip.decay_factor(self.dash_syn)
        with torch.no_grad():
            for k in range(len(spec.hidden)):
                self.weight(k).mul_(a_s / (1.0 - a_s))
        for k in range(len(spec.hidden)):
            setattr(self, f"alpha_logit{k}", rp.Parameter(torch.tensor(logit, dtype=torch.float32)))
        self.beta = chip.decay_factor(self.dash_mem)  # the raw membrane's leak
        self.last_tasg_loss: torch.Tensor | None = None

    def alpha(self, k: int) -> torch.Tensor:
        """alpha_k = sigmoid(a_k); with ``alpha_bitshift`` the nearest 1 - 2**-d, straight-through."""
        a = torch.sigmoid(getattr(self, f"alpha_logit{k}"))
        if self.spec.alpha_bitshift:
            d = torch.clamp(torch.round(-torch.log2(1.0 - a.detach())), 1, chip.DASH_MAX)
            a = a + ((1.0 - torch.pow(2.0, -d)) - a).detach()
        return a

    def hidden_spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        theta = threshold_tensor(self.threshold)
        spikes: list[torch.Tensor] = []
        for k in range(self.n_layers):
            cur = self.layer_inputs(k, x, spikes) @ self.weight(k)
            spikes.append(self._layer(cur, self.alpha(k), self.bias(k), theta))
        return spikes

    def _layer(self, cur: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """Spikes (B, T, n) of one layer: the fused scan (`MPSScanFunction`)."""
        return MPSScanFunction.apply(cur, bias, theta.to(cur.dtype), alpha, self.beta, STATE_LIMIT,
                                     float(self.spec.max_spikes), self.spec.reset == "smoothed")

    def _layer_reference(self, cur: torch.Tensor, alpha: torch.Tensor, bias: torch.Tensor,
                         theta: torch.Tensor) -> torch.Tensor:
        """The same layer step by step with plain autograd (the reference the scan is tested against)."""
        b, t_len, n = cur.shape
        lim_h = STATE_LIMIT
        lim_u = (STATE_LIMIT / (1.0 - alpha)).detach()  # the saturation bound carries no gradient
        v = cur.new_zeros(b, n)
        h = cur.new_zeros(b, n)
        smoothed_reset = self.spec.reset == "smoothed"
        out = []
        for t in range(t_len):
            u = self.beta * torch.maximum(torch.minimum(v + cur[:, t] / self.beta, lim_u), -lim_u)
            h = torch.clamp(alpha * h + (1.0 - alpha) * (u + bias), -lim_h, lim_h)
            s = spike(h, theta, float(self.spec.max_spikes))
            if smoothed_reset:
                v, h = u, h - s.detach() * theta
            else:
                v = u - s.detach() * theta
            out.append(s)
        return torch.stack(out, 1)

    def forward(self, events: torch.Tensor) -> torch.Tensor:
        v = self.readout_membrane(events)
        gain = self.readout_gain
        logits = logits_from_membrane(v, gain)
        t0 = readout_skip_steps(v.shape[1])  # TASG compares the steps the logits average
        self.last_tasg_loss = None
        if self.training and self.spec.tasg_weight > 0 and torch.is_grad_enabled() and v.shape[1] - t0 > 1:
            aux = self.spec.tasg_weight * tasg_loss(v[:, t0:] / gain)
            self.last_tasg_loss = aux.detach()
            logits = attach_aux_loss(logits, aux)
        return logits

    def to_chipnet(self, approximate: bool = False) -> ChipNet:
        """isyn <- U, vmem <- H / (1 - alpha); alpha rounded to a bit shift (module docstring)."""
        pops, weights, notes, alphas = [], [], [], []
        for k, n in enumerate(self.spec.hidden):
            a = float(self.alpha(k).detach())
            d = dash_from_alpha(a)
            a_r = chip.decay_factor(d)
            alphas.append({"layer": k, "alpha": a, "dash_mem": d, "alpha_chip": a_r})
            if abs(a - a_r) > 1e-6:
                notes.append(f"hidden{k}: alpha {a:.4f} -> {a_r:.4f} (v_mem_decay {d})")
            pops.append(Population(f"hidden{k}", n, self.dash_mem, d, 1.0 / (1.0 - a_r), np64(self.bias(k))))
            weights.append(self.weight(k).detach() / self.beta)
        if self.spec.reset == "membrane":
            notes.append("the reset lands on the smoothed potential (vmem) on the chip, on the raw membrane (isyn) in "
                         "the trained model: the chip's isyn is never reset")
        meta = {"conversion": {"status": "exact" if not notes else "approximate", "model": "mps",
                               "reset_trained": self.spec.reset, "reset_chip": "smoothed", "notes": notes,
                               "alphas": alphas}}
        return self.chain_chipnet("mps", weights, pops, metadata=meta)


@torch.jit.script
def _mps_forward(cur: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor, alpha: float, beta: float,
                 lim_u: float, lim_h: float, max_spikes: float, smoothed: bool):
    b, t_len, n = cur.shape
    v = cur.new_zeros(b, n)
    h = cur.new_zeros(b, n)
    spikes = torch.empty_like(cur)
    p_all = torch.empty_like(cur)
    q_all = torch.empty_like(cur)
    hp_all = torch.empty_like(cur)
    u_all = torch.empty_like(cur)
    hh_all = torch.empty_like(cur)
    for t in range(t_len):
        hp_all[:, t] = h
        p = v + cur[:, t] / beta
        u = beta * torch.clamp(p, -lim_u, lim_u)
        q = alpha * h + (1.0 - alpha) * (u + bias)
        hh = torch.clamp(q, -lim_h, lim_h)
        s = torch.clamp(torch.floor(hh / theta), 0.0, max_spikes)
        if smoothed:
            v = u
            h = hh - s * theta
        else:
            v = u - s * theta
            h = hh
        spikes[:, t] = s
        p_all[:, t] = p
        q_all[:, t] = q
        u_all[:, t] = u
        hh_all[:, t] = hh
    return spikes, p_all, q_all, hp_all, u_all, hh_all


@torch.jit.script
def _mps_backward(gn: torch.Tensor, p_all: torch.Tensor, q_all: torch.Tensor, hp_all: torch.Tensor,
                  u_all: torch.Tensor, bias: torch.Tensor, alpha: float, beta: float, lim_u: float, lim_h: float):
    """Reverse scan from gn = dL/dn * dn/dH (B, T, N)."""
    b, t_len, n = gn.shape
    mask_u = (p_all.abs() < lim_u).to(gn.dtype)
    mask_h = (q_all.abs() < lim_h).to(gn.dtype)
    grad_cur = torch.empty_like(gn)
    gv = gn.new_zeros(b, n)
    gh = gn.new_zeros(b, n)
    galpha = gn.new_zeros(b, n)
    gbias = gn.new_zeros(b, n)
    for k in range(t_len):
        t = t_len - 1 - k
        gq = (gn[:, t] + gh) * mask_h[:, t]
        gp = (gq * (1.0 - alpha) + gv) * beta * mask_u[:, t]
        grad_cur[:, t] = gp / beta
        gv = gp
        gh = gq * alpha
        galpha = galpha + gq * (hp_all[:, t] - u_all[:, t] - bias)
        gbias = gbias + gq
    return grad_cur, gbias.sum(0) * (1.0 - alpha), galpha.sum()


class MPSScanFunction(torch.autograd.Function):
    """One MPS layer over the window with an explicit backward scan (equations in the module docstring).

    Both resets have the same backward: the reset term is detached, so dv/dU = dh/dH = 1.
    Gradients: input current, bias and alpha (the saturation bound L / (1 - alpha) is held fixed).
    """

    @staticmethod
    def forward(ctx, cur, bias, theta, alpha, beta, lim, max_spikes, smoothed):  # type: ignore[override]
        a = float(alpha)  # theta: (B, 1) or (1, 1), as `threshold_tensor` makes it
        consts = (a, float(beta), lim / (1.0 - a), float(lim), float(max_spikes))
        spikes, p_all, q_all, hp_all, u_all, hh_all = _mps_forward(cur, bias, theta, consts[0], consts[1], consts[2],
                                                                   consts[3], consts[4], bool(smoothed))
        ctx.save_for_backward(p_all, q_all, hp_all, u_all, hh_all, bias, theta, alpha)
        ctx.consts = consts
        return spikes

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        p_all, q_all, hp_all, u_all, hh_all, bias, theta, alpha = ctx.saved_tensors
        a, beta, lim_u, lim_h, max_spikes = ctx.consts
        th3 = theta.unsqueeze(1)  # (B or 1, 1, 1) against (B, T, N)
        # the surrogate of `models.lif`; 1/theta applied last, as before, so gradients are bit-identical
        gn = (grad_s * surrogate_shape(hh_all / th3, max_spikes) / th3).contiguous()
        grad_cur, gbias, galpha = _mps_backward(gn, p_all, q_all, hp_all, u_all, bias, a, beta, lim_u, lim_h)
        return grad_cur, gbias, None, galpha.reshape(alpha.shape).to(alpha.dtype), None, None, None, None


def tasg_loss(logits_t: torch.Tensor) -> torch.Tensor:
    """mean over batch and t of KL(p_{t+1} || p_t), p_t = softmax(logits_t[:, t]); p_{t+1} is detached."""
    logp = torch.log_softmax(logits_t, -1)
    teacher = logp[:, 1:].detach()
    return (teacher.exp() * (teacher - logp[:, :-1])).sum(-1).mean()


__all__ = ["MPSSpec", "MPSNet", "tasg_loss"]
