"""Functional core of the chip-faithful LIF neuron: pure functions over explicit state.

One Xylo IMU neuron per time step t (float units in which the nominal threshold is 1):

    a_t = alpha_syn * clip(a_{t-1} + I_t)            synaptic current, decayed after the input
    u_t = clip(alpha_mem * v_{t-1} + a_t + b)        membrane before spiking
    n_t = min(floor(u_t / theta), n_max)  if u_t >= theta else 0
    v_t = u_t - n_t * theta                          subtractive reset

with ``clip`` at +-``state_limit`` (the chip's 16-bit saturation expressed in float units:
32767 / integer threshold) and ``alpha = 1 - 2**-dash`` the bit-shift decay of the chip.
Hidden neurons allow up to 31 spikes per step, readout neurons do not spike.

`lif_step` is the reference (plain autograd); `lif_scan` runs the whole sequence in a
TorchScript forward scan with an explicit backward scan (`LIFScanFunction`), which removes
autograd's per-step bookkeeping and is what training uses. Both give identical outputs and
gradients (tests/test_models.py).

Surrogate gradient of n with respect to u, with x = u / theta:
    dn/du = 1 / theta * (1 / (1 + beta |x - 1|)^2   if x < 1;
                         1                           if 1 <= x < n_max + 1;  0 beyond)
The reset term is detached (gradient does not flow through -n * theta), a common choice that
keeps the membrane gradient from being cancelled by the reset.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

SURROGATE_BETA = 10.0


class LIFState(NamedTuple):
    isyn: torch.Tensor  # (B, N)
    vmem: torch.Tensor  # (B, N)


class LIFParams(NamedTuple):
    alpha_syn: float
    alpha_mem: float
    bias: torch.Tensor  # (N,)
    state_limit: float
    max_spikes: float


def surrogate_grad(u: torch.Tensor, theta: torch.Tensor, max_spikes: float, beta: float = SURROGATE_BETA) -> torch.Tensor:
    """dn/du of the multi-spike function (see module docstring)."""
    x = u / theta
    below = 1.0 / (1.0 + beta * (x - 1.0).abs()) ** 2
    g = torch.where(x < 1.0, below, (x < max_spikes + 1.0).to(u.dtype))
    return g / theta


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, theta, max_spikes):  # type: ignore[override]
        ctx.save_for_backward(u, theta)
        ctx.max_spikes = max_spikes
        return torch.clamp(torch.floor(u / theta), 0.0, max_spikes)

    @staticmethod
    def backward(ctx, grad_n):  # type: ignore[override]
        u, theta = ctx.saved_tensors
        return grad_n * surrogate_grad(u, theta, ctx.max_spikes), None, None


def spike(u: torch.Tensor, theta: torch.Tensor, max_spikes: float) -> torch.Tensor:
    """n = clamp(floor(u / theta), 0, max_spikes) with the surrogate gradient."""
    return _SpikeFn.apply(u, theta, max_spikes)


def lif_step(i_t: torch.Tensor, state: LIFState, p: LIFParams, theta: torch.Tensor) -> tuple[torch.Tensor, LIFState]:
    """One step of the equations in the module docstring (reference implementation)."""
    lim = p.state_limit
    a = p.alpha_syn * torch.clamp(state.isyn + i_t, -lim, lim)
    u = torch.clamp(p.alpha_mem * state.vmem + a + p.bias, -lim, lim)
    n = spike(u, theta, p.max_spikes)
    v = u - n.detach() * theta
    return n, LIFState(a, v)


def lif_reference(i_in: torch.Tensor, p: LIFParams, theta: torch.Tensor) -> torch.Tensor:
    """Spikes (B, T, N) for input currents (B, T, N) from rest, step by step with autograd."""
    b, _, n = i_in.shape
    z = i_in.new_zeros(b, n)
    state = LIFState(z, z)
    out = []
    for t in range(i_in.shape[1]):
        s, state = lif_step(i_in[:, t], state, p, theta)
        out.append(s)
    return torch.stack(out, 1)


@torch.jit.script
def _scan_forward(i_in: torch.Tensor, bias: torch.Tensor, theta: torch.Tensor, alpha_syn: float,
                  alpha_mem: float, lim: float, max_spikes: float):
    b, t_len, n = i_in.shape
    a = i_in.new_zeros(b, n)
    v = i_in.new_zeros(b, n)
    spikes = torch.empty_like(i_in)
    u_all = torch.empty_like(i_in)
    p_all = torch.empty_like(i_in)
    q_all = torch.empty_like(i_in)
    for t in range(t_len):
        p = a + i_in[:, t]
        a = alpha_syn * torch.clamp(p, -lim, lim)
        q = alpha_mem * v + a + bias
        u = torch.clamp(q, -lim, lim)
        s = torch.clamp(torch.floor(u / theta), 0.0, max_spikes)
        v = u - s * theta
        spikes[:, t] = s
        u_all[:, t] = u
        p_all[:, t] = p
        q_all[:, t] = q
    return spikes, u_all, p_all, q_all


@torch.jit.script
def _scan_backward(grad_s: torch.Tensor, u_all: torch.Tensor, p_all: torch.Tensor, q_all: torch.Tensor,
                   theta: torch.Tensor, alpha_syn: float, alpha_mem: float, lim: float, max_spikes: float,
                   beta: float):
    b, t_len, n = grad_s.shape
    # surrogate for all steps at once (no recurrence involved)
    x = u_all / theta
    g = torch.where(x < 1.0, 1.0 / (1.0 + beta * (x - 1.0).abs()) ** 2, (x < max_spikes + 1.0).to(u_all.dtype))
    gn_du = grad_s * g / theta
    mask_u = (q_all.abs() < lim).to(u_all.dtype)
    mask_a = (p_all.abs() < lim).to(u_all.dtype)
    grad_i = torch.empty_like(grad_s)
    gv = grad_s.new_zeros(b, n)
    ga = grad_s.new_zeros(b, n)
    gbias = grad_s.new_zeros(b, n)
    for k in range(t_len):
        t = t_len - 1 - k
        gq = (gv + gn_du[:, t]) * mask_u[:, t]
        gp = (gq + ga) * alpha_syn * mask_a[:, t]
        grad_i[:, t] = gp
        ga = gp
        gv = gq * alpha_mem
        gbias = gbias + gq
    return grad_i, gbias.sum(0)


class LIFScanFunction(torch.autograd.Function):
    """Whole-sequence LIF with an explicit backward scan (equations in the module docstring)."""

    @staticmethod
    def forward(ctx, i_in, bias, theta, alpha_syn, alpha_mem, lim, max_spikes):  # type: ignore[override]
        spikes, u_all, p_all, q_all = _scan_forward(i_in, bias, theta, alpha_syn, alpha_mem, lim, max_spikes)
        ctx.save_for_backward(u_all, p_all, q_all, theta)
        ctx.consts = (alpha_syn, alpha_mem, lim, max_spikes)
        return spikes

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        u_all, p_all, q_all, theta = ctx.saved_tensors
        alpha_syn, alpha_mem, lim, max_spikes = ctx.consts
        grad_i, gbias = _scan_backward(grad_s.contiguous(), u_all, p_all, q_all, theta, alpha_syn, alpha_mem, lim,
                                       max_spikes, SURROGATE_BETA)
        return grad_i, gbias, None, None, None, None, None


def lif_scan(i_in: torch.Tensor, p: LIFParams, theta: torch.Tensor) -> torch.Tensor:
    """Spikes (B, T, N) for input currents (B, T, N) from rest: the fused forward/backward scan.

    ``theta`` broadcasts against (B, N): a scalar tensor, (B, 1) per sample, or (1, N).
    """
    theta = torch.as_tensor(theta, dtype=i_in.dtype)
    while theta.dim() < 2:
        theta = theta.unsqueeze(0)
    return LIFScanFunction.apply(i_in, p.bias, theta, float(p.alpha_syn), float(p.alpha_mem),
                                 float(p.state_limit), float(p.max_spikes))


def leaky_readout(i_in: torch.Tensor, alpha_syn: float, alpha_mem: float, bias: torch.Tensor) -> torch.Tensor:
    """Non-spiking readout membrane (B, T, C): a_t = alpha_syn (a_{t-1} + I_t); v_t = alpha_mem v_{t-1} + a_t + b.

    Linear in its input, so it is computed as a causal filter: two first-order recursions,
    each a cumulative sum of geometrically weighted inputs, done step-free with conv1d.
    """
    t_len = i_in.shape[1]
    k = torch.arange(t_len, dtype=i_in.dtype, device=i_in.device)
    # impulse response of the cascade: h[k] = sum_{j=0..k} alpha_syn^(j+1) alpha_mem^(k-j)
    if abs(alpha_syn - alpha_mem) < 1e-12:
        h = (k + 1) * alpha_syn ** (k + 1)
    else:
        h = alpha_syn * (alpha_syn ** (k + 1) - alpha_mem ** (k + 1)) / (alpha_syn - alpha_mem)
    # response to the constant bias: sum_{k<=t} alpha_mem^k
    hb = torch.cumsum(alpha_mem ** k, 0)
    x = i_in.transpose(1, 2)  # (B, C, T)
    b_, c_, _ = x.shape
    y = torch.nn.functional.conv1d(
        torch.nn.functional.pad(x.reshape(b_ * c_, 1, t_len), (t_len - 1, 0)), h.flip(0).view(1, 1, -1)
    ).view(b_, c_, t_len)
    return y.transpose(1, 2) + hb.view(1, -1, 1) * bias
