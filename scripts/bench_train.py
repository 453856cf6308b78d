"""Training throughput: the ASPEN network's compiled scans vs Rockpool's LIFTorch, same work.

Both networks are 15 -> 48 -> 48 -> 48 -> 6 with the same time constants; one training step is
forward + backward + Adam on a batch of B windows x T steps of binary input events. Both run
in this process on the same inputs, in ``--repeats`` interleaved blocks (``--iters`` steps of
ours, then ``--ref-iters`` of LIFTorch), and each side's fastest step is kept: the machine may
be shared, and a block timed during someone else's job would otherwise decide the ratio (one
sequential mean gave 29x where the runs before and after gave 58x and 61x). Samples per second
are printed for each, with the median step too.

    python scripts/bench_train.py [--batch 64] [--steps 512] [--ref-iters 2] [--iters 6] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def rockpool_lif_net(tau_syn: float, tau_mem: float, dt: float, n_out: int):
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch

    layers = []
    sizes = (15, 48, 48, 48)
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [LinearTorch((a, b)), LIFTorch(b, tau_syn=tau_syn, tau_mem=tau_mem, dt=dt)]
    layers += [LinearTorch((48, n_out)), LIFTorch(n_out, tau_syn=tau_syn, tau_mem=tau_mem, dt=dt)]
    return Sequential(*layers)


def training_step(net, x, y, out_fn):
    """One forward + backward + Adam step of ``net`` on (x, y), as a function to time."""
    opt = torch.optim.Adam(net.parameters().astorch(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def one():
        logits = out_fn(net, x)
        loss = loss_fn(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    one()  # warm-up (numba compile / allocator)
    return one


def time_block(step, iters: int) -> list[float]:
    """Seconds of each of ``iters`` calls of ``step``."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--iters", type=int, default=6)
    ap.add_argument("--ref-iters", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved blocks of both, fastest step kept (default 3)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if min(a.batch, a.steps, a.iters, a.ref_iters, a.repeats, a.threads) < 1:
        ap.error("--batch, --steps, --iters, --ref-iters, --repeats and --threads must be positive")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)

    from models.aspen_synnet import AspenSynNet, NetSpec

    x = (torch.rand(a.batch, a.steps, 15) < 0.27).float()
    y = torch.randint(0, 6, (a.batch,))
    spec = NetSpec(n_out=6)

    ours = AspenSynNet(spec)
    ours.set_threshold(torch.tensor(1.2))
    step_ours = training_step(ours, x, y, lambda n, x: n(x)[0])
    ref = rockpool_lif_net(spec.tau_syn_s, spec.tau_mem_s, spec.dt, 6)
    step_ref = training_step(ref, x, y, lambda n, x: n(x)[0].mean(1))

    times_ours: list[float] = []
    times_ref: list[float] = []
    for _ in range(a.repeats):
        times_ours += time_block(step_ours, a.iters)
        times_ref += time_block(step_ref, a.ref_iters)
    t_ours, t_ref = min(times_ours), min(times_ref)

    sps_ours, sps_ref = a.batch / t_ours, a.batch / t_ref
    print(f"work: batch {a.batch} x {a.steps} steps, forward + backward + Adam, {a.threads} thread(s)")
    print(f"rockpool LIFTorch : {t_ref:8.3f} s/step  {sps_ref:9.1f} samples/s  (median step {statistics.median(times_ref):.3f} s)")
    print(f"aspen fast scans  : {t_ours:8.3f} s/step  {sps_ours:9.1f} samples/s  (median step {statistics.median(times_ours):.3f} s)")
    print(f"speed-up: {sps_ours / sps_ref:.1f}x (fastest steps; medians: {statistics.median(times_ref) / statistics.median(times_ours):.1f}x)")


if __name__ == "__main__":
    main()
