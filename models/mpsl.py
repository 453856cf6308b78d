"""MPSL: multi-plasticity synergy learning (arXiv 2508.13673) on the chip's LIF neurons.

Each hidden layer k has three weight sets from the same presynaptic spikes P (B, T, n_pre),
fused in the synaptic input by learnable coefficients lambda = (l1, l2, l3):

    I(t) = P(t) @ (l1 W1 + l3 W3) + l2 P(t) @ W2(t - 1)

- W1: trained by surrogate gradients through time (STBP), like every other weight here;
- W2: Hebbian, updated inside the forward pass at every step (no gradient flows through it):

      W2(t) = W2(t - 1) e^(-dt / tau_w) + eta * P(t)^T (rho(U(t)) + beta_h),   rho(U) = tanh(U / theta)

  with U the postsynaptic membrane before its spike. Each window starts from the stored W2
  (``w2_{k}``, "the trained value"). In training the update is the batch mean (one W2 per
  batch) and the stored W2 takes the value the window ends with; in evaluation each window
  has its own W2 and the stored one is not touched.
- W3: self-backpropagation (SBP), driven by W2's change over the window, dW2 = W2(T) - W2(0):
  the change of layer k + 1's synapses flows back onto layer k's through the neurons they
  share, ``dW3_k = eta_sbp * r_pre,k mean_j(dW2_{k+1})^T`` (r_pre,k the mean presynaptic rate
  of layer k), and the last layer takes ``eta_sbp * dW2_k``. Applied after each training
  forward pass (our reading of the mechanism; the paper trains images and events).

Neurons, readout, latency and threshold are those of `models.aspen_synnet` (`LayeredNet`).

Conversion (`to_chipnet`): the chip has no on-line plasticity, so W2 is frozen at its stored
value and each layer becomes one weight matrix ``W = l1 W1 + l2 W2 + l3 W3``: exact for the
merged network (``mode = "merged"`` computes that network in float; `merged_model` builds it as
a `ChipNetModel`). The plastic model (``mode = "plastic"``, the default), the merged one and
the chip are reported side by side by `scripts/reproduce_models.py`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import rockpool.parameters as rp
import torch

from aspen_deploy.ir import ChipNet, Population
from models.chipnet_model import ChipNetModel, LayeredNet, np64, threshold_tensor
from models.lif import LIFState, lif_scan, lif_step
from models.spec import LayeredSpec, SpecError

MODES = ("plastic", "merged")


@dataclass
class MPSLSpec(LayeredSpec):
    eta_hebb: float = 1e-3  # Hebbian rate eta
    tau_w_s: float = 0.5  # decay time constant of W2
    hebb_beta: float = -0.2  # beta_h: below it, coincident activity depresses
    eta_sbp: float = 0.1  # self-backpropagation rate
    lambda_init: tuple[float, float, float] = (1.0, 0.1, 0.1)  # l2, l3 small: a strong Hebbian start saturates isyn

    TUPLE_FIELDS = {**LayeredSpec.TUPLE_FIELDS, "lambda_init": float}

    def check(self) -> None:
        super().check()
        if len(self.lambda_init) != 3:
            raise SpecError(f"lambda_init needs 3 numbers (l1, l2, l3), got {self.lambda_init}")
        if self.tau_w_s <= 0:
            raise SpecError(f"tau_w_s must be positive, got {self.tau_w_s}")


class MPSLNet(LayeredNet):
    """MPSL layers (module docstring) in the chip-faithful layered network."""

    def __init__(self, spec: MPSLSpec | None = None, *args, **kwargs):
        spec = spec or MPSLSpec()
        super().__init__(spec, *args, **kwargs)
        sizes = (spec.n_in, *spec.hidden)
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"lam{k}", rp.Parameter(torch.tensor(spec.lambda_init, dtype=torch.float32)))
            self.register_buffer(f"w2_{k}", torch.zeros(a, b))
            self.register_buffer(f"w3_{k}", torch.zeros(a, b))
        self.mode = "plastic"
        self.w2_decay = math.exp(-spec.dt / spec.tau_w_s)

    def lam(self, k: int) -> torch.Tensor:
        return getattr(self, f"lam{k}")

    def merged_weight(self, k: int) -> torch.Tensor:
        """W = l1 W1 + l2 W2 + l3 W3 with W2 at its stored value (float32, as the merged model uses it)."""
        lam = self.lam(k)
        return lam[0] * self.weight(k) + lam[1] * getattr(self, f"w2_{k}") + lam[2] * getattr(self, f"w3_{k}")

    def hidden_spikes(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.mode not in MODES:
            raise ValueError(f"mpsl mode must be one of {MODES}, got {self.mode!r}")
        theta = threshold_tensor(self.threshold)
        spikes: list[torch.Tensor] = []
        ends: list[torch.Tensor] = []
        pres: list[torch.Tensor] = []
        for k in range(self.n_layers):
            pre = self.layer_inputs(k, x, spikes)
            pres.append(pre)
            if self.mode == "merged":
                spikes.append(lif_scan(pre @ self.merged_weight(k), self.lif_params(k), theta))
            else:
                s, w2_end = self._plastic_layer(k, pre, theta)
                spikes.append(s)
                ends.append(w2_end)
        if self.mode == "plastic" and self.training:
            self._consolidate(ends, pres)
        return spikes

    def _plastic_layer(self, k: int, pre: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer with the Hebbian W2 evolving step by step (module docstring).

        The Hebbian recursion runs once without autograd (it is not differentiated); in training
        the layer is then recomputed with the fused LIF scan on the same currents, the Hebbian
        term entering as its recorded value plus a zero-valued ``P(t) @ W2(t-1)`` path that
        carries its gradient to the presynaptic spikes (so spikes are identical and the
        backward pass is the fast one of `models.lif`).
        """
        lam = self.lam(k)
        p = self.lif_params(k)
        static = pre @ (lam[0] * self.weight(k) + lam[2] * getattr(self, f"w3_{k}").clone())
        shared = self.training  # batch-mean update in training, one W2 per window in evaluation
        spikes, hebb, w2_steps, w2_end = self._hebbian_pass(k, pre.detach(), static.detach(), float(lam[1].detach()), theta,
                                                            shared)
        if not (shared and torch.is_grad_enabled()):
            return spikes, w2_end
        path = torch.einsum("btp,tpn->btn", pre, w2_steps)
        cur = static + lam[1] * (hebb + (path - path.detach()))
        return lif_scan(cur, p, theta), w2_end

    @torch.no_grad()
    def _hebbian_pass(self, k: int, pre: torch.Tensor, static: torch.Tensor, lam2: float, theta: torch.Tensor,
                      shared: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(spikes, Hebbian currents P(t) @ W2(t-1), W2 before each step (shared only), final W2)."""
        s = self.spec
        p = self.lif_params(k)
        w2 = getattr(self, f"w2_{k}").clone()
        b, t_len, n = static.shape
        if not shared:
            w2 = w2.unsqueeze(0).expand(b, -1, -1).clone()
        w2_steps = static.new_empty(t_len, *w2.shape) if shared else None
        hebb = torch.empty_like(static)
        state = LIFState(static.new_zeros(b, n), static.new_zeros(b, n))
        out = torch.empty_like(static)
        for t in range(t_len):
            p_t = pre[:, t]
            if shared:
                w2_steps[t] = w2
                h_t = p_t @ w2
            else:
                h_t = torch.bmm(p_t.unsqueeze(1), w2).squeeze(1)
            hebb[:, t] = h_t
            spk, state = lif_step(static[:, t] + lam2 * h_t, state, p, theta)
            out[:, t] = spk
            u = state.vmem + spk * theta  # membrane before the spike's reset
            post = torch.tanh(u / theta) + s.hebb_beta
            dw = p_t.t() @ post / b if shared else p_t.unsqueeze(2) * post.unsqueeze(1)
            w2 = w2 * self.w2_decay + s.eta_hebb * dw
        return out, hebb, w2_steps, w2

    @torch.no_grad()
    def _consolidate(self, ends: list[torch.Tensor], pres: list[torch.Tensor]) -> None:
        """Store W2's end-of-window value and apply the self-backpropagated change to W3."""
        d_w2 = [e - getattr(self, f"w2_{k}") for k, e in enumerate(ends)]
        for k in range(self.n_layers):
            if k + 1 < self.n_layers:
                rate_pre = pres[k].detach().mean((0, 1))
                d_w3 = self.spec.eta_sbp * torch.outer(rate_pre, d_w2[k + 1].mean(1))
            else:
                d_w3 = self.spec.eta_sbp * d_w2[k]
            # new tensors, not in-place: autograd still holds the old ones for this step's backward
            setattr(self, f"w3_{k}", getattr(self, f"w3_{k}") + d_w3)
            setattr(self, f"w2_{k}", ends[k].detach().clone())

    def to_chipnet(self, approximate: bool = False) -> ChipNet:
        """The merged network: one weight matrix per layer, W2 frozen (exact for that network)."""
        pops = [Population(f"hidden{k}", h, self.dash_syn, self.dash_mem, 1.0, np64(self.bias(k)))
                for k, h in enumerate(self.spec.hidden)]
        lams = [[float(v) for v in self.lam(k).detach()] for k in range(self.n_layers)]
        meta = {"conversion": {"status": "exact", "model": "mpsl",
                               "notes": ["merged network W = l1 W1 + l2 W2 + l3 W3 with W2 frozen at its trained "
                                         "value: exact for the merged network; the chip has no on-line plasticity"],
                               "lambdas": lams}}
        with torch.no_grad():
            weights = [self.merged_weight(k) for k in range(self.n_layers)]
        return self.chain_chipnet("mpsl", weights, pops, metadata=meta)

    def merged_model(self) -> ChipNetModel:
        """The merged float network as a `ChipNetModel` (the float reference of the chip)."""
        return ChipNetModel.from_chipnet(self.to_chipnet())
