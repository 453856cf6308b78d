"""Functional core of the chip-faithful LIF neuron: pure functions over explicit state.

One Xylo IMU neuron per time step t (float units in which the nominal threshold is 1):

    a_t = alpha_syn * clip(a_{t-1} + I_t)            synaptic current, decayed after the input
    u_t = clip(alpha_mem * v_{t-1} + a_t + b)        membrane before spiking
    n_t = min(floor(u_t / theta), n_max)  if u_t >= theta else 0
    v_t = u_t - n_t * theta                          subtractive reset

with ``clip`` at +-``state_limit`` (the chip's 16-bit saturation expressed in float units:
32767 / integer threshold) and ``alpha = 1 - 2**-dash`` the bit-shift decay of the chip.
Hidden neurons allow up to 31 spikes per step, readout neurons do not spike.

`lif_step` is the reference (plain autograd); `lif_scan` runs the whole sequence as one
compiled (numba) forward scan with an explicit backward scan (`LIFScanFunction`), which removes
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

import numpy as np
import torch
from numba import njit

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


def surrogate_shape(x: torch.Tensor, max_spikes: float, beta: float = SURROGATE_BETA) -> torch.Tensor:
    """theta * dn/du as a function of x = u / theta (see module docstring)."""
    below = 1.0 / (1.0 + beta * (x - 1.0).abs()) ** 2
    return torch.where(x < 1.0, below, (x < max_spikes + 1.0).to(x.dtype))


def surrogate_grad(u: torch.Tensor, theta: torch.Tensor, max_spikes: float, beta: float = SURROGATE_BETA) -> torch.Tensor:
    """dn/du of the multi-spike function (see module docstring)."""
    return surrogate_shape(u / theta, max_spikes, beta) / theta


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


@njit(cache=True)  # no fastmath: floor(u / theta) must divide exactly as the reference does
def _scan_forward(i_in, bias, theta, alpha_syn, alpha_mem, lim, max_spikes):  # pragma: no cover - compiled
    """Forward scan over (B, T, N); also returns u and the two saturation masks (bit 0: a, bit 1: u)."""
    b_n, t_n, n_n = i_in.shape
    spikes = np.empty_like(i_in)
    u_all = np.empty_like(i_in)
    flags = np.empty((b_n, t_n, n_n), dtype=np.uint8)
    a = np.zeros(n_n, dtype=i_in.dtype)
    v = np.zeros(n_n, dtype=i_in.dtype)
    for b in range(b_n):
        th = theta[b]
        a[:] = 0.0
        v[:] = 0.0
        for t in range(t_n):
            for n in range(n_n):
                p = a[n] + i_in[b, t, n]
                f1 = (p <= lim) & (p >= -lim)
                a[n] = alpha_syn * min(max(p, -lim), lim)
                q = alpha_mem * v[n] + a[n] + bias[n]
                f2 = (q <= lim) & (q >= -lim)
                u = min(max(q, -lim), lim)
                sp = min(max(np.floor(u / th), 0.0), max_spikes)
                v[n] = u - sp * th
                spikes[b, t, n] = sp
                u_all[b, t, n] = u
                flags[b, t, n] = f1 + 2 * f2
    return spikes, u_all, flags


@njit(cache=True, fastmath=True)
def _scan_backward(gn_du, flags, alpha_syn, alpha_mem):  # pragma: no cover - compiled
    """Reverse scan: gq = (gv + dL/du_t) m_u; gp = (gq + ga) alpha_syn m_a; dL/dI_t = gp."""
    b_n, t_n, n_n = gn_du.shape
    grad_i = np.empty_like(gn_du)
    gbias = np.zeros(n_n, dtype=gn_du.dtype)
    gv = np.zeros(n_n, dtype=gn_du.dtype)
    ga = np.zeros(n_n, dtype=gn_du.dtype)
    for b in range(b_n):
        gv[:] = 0.0
        ga[:] = 0.0
        for k in range(t_n):
            t = t_n - 1 - k
            for n in range(n_n):
                f = flags[b, t, n]
                gq = (gv[n] + gn_du[b, t, n]) * (f >> 1)
                gp = (gq + ga[n]) * alpha_syn * (f & 1)
                grad_i[b, t, n] = gp
                ga[n] = gp
                gv[n] = gq * alpha_mem
                gbias[n] += gq
    return grad_i, gbias


class LIFScanFunction(torch.autograd.Function):
    """Whole-sequence LIF with an explicit backward scan (equations in the module docstring).

    Both scans are compiled with numba: the per-step work is a few flops per neuron, so
    autograd's and the interpreter's per-step overhead was the whole cost
    (`scripts/bench_train.py` measures it against Rockpool's LIFTorch).
    """

    @staticmethod
    def forward(ctx, i_in, bias, theta, alpha_syn, alpha_mem, lim, max_spikes):  # type: ignore[override]
        x = i_in.detach().contiguous().numpy()
        f32 = np.float32
        th = np.ascontiguousarray(theta.detach().numpy().reshape(-1), dtype=np.float32)
        spikes, u_all, flags = _scan_forward(x, np.ascontiguousarray(bias.detach().numpy(), dtype=np.float32), th,
                                             f32(alpha_syn), f32(alpha_mem), f32(lim), f32(max_spikes))
        u_t = torch.from_numpy(u_all)
        ctx.save_for_backward(u_t, torch.from_numpy(flags), torch.from_numpy(th).view(-1, 1, 1))
        ctx.consts = (alpha_syn, alpha_mem, max_spikes)
        return torch.from_numpy(spikes)

    @staticmethod
    def backward(ctx, grad_s):  # type: ignore[override]
        u_all, flags, theta = ctx.saved_tensors
        alpha_syn, alpha_mem, max_spikes = ctx.consts
        gn_du = (grad_s * surrogate_grad(u_all, theta, max_spikes)).contiguous().numpy()
        grad_i, gbias = _scan_backward(gn_du, flags.numpy(), np.float32(alpha_syn), np.float32(alpha_mem))
        return torch.from_numpy(grad_i), torch.from_numpy(gbias), None, None, None, None, None


def lif_scan(i_in: torch.Tensor, p: LIFParams, theta: torch.Tensor) -> torch.Tensor:
    """Spikes (B, T, N) for input currents (B, T, N) from rest: the fused forward/backward scan.

    ``theta`` is one threshold for the batch (scalar tensor) or one per sample ((B,) or (B, 1)).
    """
    b = i_in.shape[0]
    theta = torch.as_tensor(theta, dtype=torch.float32).reshape(-1)
    if theta.numel() == 1:
        theta = theta.expand(b)
    if theta.numel() != b:
        raise ValueError(f"theta must be a scalar or one value per sample ({b}), got {theta.numel()} values")
    return LIFScanFunction.apply(i_in.to(torch.float32), p.bias.to(torch.float32), theta, float(p.alpha_syn),
                                 float(p.alpha_mem), float(p.state_limit), float(p.max_spikes))


@njit(cache=True)
def _iir(x, c, d, reverse):  # pragma: no cover - compiled
    """y_t = c y_{t-1} + d x_t over axis 1 of (B, T, N) (reverse: from the last step back)."""
    b_n, t_n, n_n = x.shape
    y = np.empty_like(x)
    for b in range(b_n):
        acc = np.zeros(n_n, dtype=x.dtype)
        for k in range(t_n):
            t = t_n - 1 - k if reverse else k
            for n in range(n_n):
                acc[n] = c * acc[n] + d * x[b, t, n]
                y[b, t, n] = acc[n]
    return y


class _FirstOrderFilter(torch.autograd.Function):
    """y_t = c y_{t-1} + d x_t; its adjoint is the same filter run backwards in time."""

    @staticmethod
    def forward(ctx, x, c, d):  # type: ignore[override]
        ctx.cd = (c, d)
        return torch.from_numpy(_iir(x.detach().contiguous().numpy(), np.float32(c), np.float32(d), False))

    @staticmethod
    def backward(ctx, gy):  # type: ignore[override]
        c, d = ctx.cd
        return torch.from_numpy(_iir(gy.contiguous().numpy(), np.float32(c), np.float32(d), True)), None, None


def leaky_readout(i_in: torch.Tensor, alpha_syn: float, alpha_mem: float, bias: torch.Tensor) -> torch.Tensor:
    """Non-spiking readout membrane (B, T, C): a_t = alpha_syn (a_{t-1} + I_t); v_t = alpha_mem v_{t-1} + a_t + b.

    Two first-order recursions (no saturation: the export scales the readout to stay clear of it).
    """
    a = _FirstOrderFilter.apply(i_in.to(torch.float32), float(alpha_syn), float(alpha_syn))
    return _FirstOrderFilter.apply(a + bias, float(alpha_mem), 1.0)
