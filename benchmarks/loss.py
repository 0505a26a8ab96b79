"""NT-Xent forward + backward: time and peak memory of ours (plain, tiled), lightly's NTXentLoss
and a naive implementation, side by side, at N = 1024 … 16384 samples (2N views), D = 128.

    python benchmarks/loss.py                       # default grid, CPU, JSON to stdout + a table
    python benchmarks/loss.py --out loss.json --sizes 1024 4096 --candidates ours_tiled lightly
    python benchmarks/loss.py --device cuda --full  # every candidate at every size

Method.  Every (candidate, N) runs in a fresh Python process, so no allocator cache or earlier
peak hides anything.  The process builds the inputs (two (N, D) float32 tensors that require
grad), runs the candidate once on a tiny batch (loads kernels), then measures one forward +
backward at size N:

* CPU peak memory: the increase of the process's peak resident set size (``ru_maxrss``) over the
  value just before the measured pass — every byte the pass touched at its high point,
  whichever allocator served it.
* CUDA peak memory: ``torch.cuda.max_memory_allocated`` minus the allocation before the pass.
* Time: the best of ``--repeats`` forward + backward passes (wall clock, synchronised on CUDA).

Ratios are reported against lightly's ``NTXentLoss`` (memory ratio = ours / lightly, time
ratio = ours / lightly; below 1 is better).  ``--full`` adds the candidates left out of the
default grid at N = 16384 because they need several GB (plain and lightly and naive: O(N²)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CANDIDATES = ("ours_plain", "ours_tiled", "lightly", "naive")
SIZES = (1024, 2048, 4096, 8192, 16384)
DEFAULT_LARGEST = {"ours_tiled": 16384}  # others stop at 8192 unless --full


def build(candidate: str, n: int, temperature: float):
    import torch
    import torch.nn.functional as F

    if candidate in ("ours_plain", "ours_tiled"):
        from contrastive.components import losses

        tile = 0 if candidate == "ours_plain" else max(1, losses.BLOCK_ENTRIES // (2 * n))
        return losses.NTXentLoss(temperature, tile_size=tile)
    if candidate == "lightly":
        from lightly.loss import NTXentLoss

        return NTXentLoss(temperature=temperature)
    if candidate == "naive":

        def naive(z_a, z_b):
            z = F.normalize(torch.cat([z_a, z_b]), dim=1)
            sim = z @ z.T / temperature
            sim = sim.masked_fill(torch.eye(sim.shape[0], dtype=torch.bool, device=sim.device), float("-inf"))
            m = z_a.shape[0]
            targets = torch.cat([torch.arange(m, 2 * m), torch.arange(m)]).to(sim.device)
            return F.cross_entropy(sim, targets)

        return naive
    raise SystemExit(f"unknown candidate {candidate!r}; choose from {', '.join(CANDIDATES)}")


def worker(candidate: str, n: int, dim: int, repeats: int, device: str, temperature: float) -> dict:
    """One candidate at one size, in this (fresh) process."""
    import torch

    torch.manual_seed(0)
    loss_fn = build(candidate, n, temperature)
    z_a = torch.randn(n, dim, device=device, requires_grad=True)
    z_b = torch.randn(n, dim, device=device, requires_grad=True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def once(a, b) -> float:
        a.grad = b.grad = None
        sync()
        start = time.perf_counter()
        loss_fn(a, b).backward()
        sync()
        return time.perf_counter() - start

    once(torch.randn(64, dim, device=device, requires_grad=True), torch.randn(64, dim, device=device, requires_grad=True))
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        times = [once(z_a, z_b)]
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        times = [once(z_a, z_b)]
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
    times += [once(z_a, z_b) for _ in range(repeats - 1)]
    return {"candidate": candidate, "n": n, "dim": dim, "time_s": min(times), "peak_mb": peak, "runs": len(times)}


def run_one(candidate: str, n: int, args) -> dict:
    command = [
        sys.executable, __file__, "--worker", candidate, str(n), "--dim", str(args.dim), "--repeats",
        str(args.repeats if n < 8192 else max(1, args.repeats - 1)), "--device", args.device,
        "--temperature", str(args.temperature),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        return {"candidate": candidate, "n": n, "dim": args.dim, "error": (done.stderr or done.stdout).strip()[-500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratios(results: list[dict]) -> dict:
    table: dict = {}
    by_key = {(r["candidate"], r["n"]): r for r in results if "error" not in r}
    for (candidate, n), r in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        base = by_key.get(("lightly", n))
        if base is None or candidate == "lightly":
            continue
        table.setdefault(str(n), {})[candidate] = {
            "time_vs_lightly": r["time_s"] / base["time_s"],
            "memory_vs_lightly": r["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else None,
        }
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", nargs=2, metavar=("CANDIDATE", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=CANDIDATES)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per size (one fewer from N = 8192)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="every candidate at every size (O(N²) ones need GBs)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per candidate and size")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()

    if args.worker:
        candidate, n = args.worker
        print(json.dumps(worker(candidate, int(n), args.dim, args.repeats, args.device, args.temperature)))
        return

    import torch

    results = []
    started = time.perf_counter()
    for n in args.sizes:
        for candidate in args.candidates:
            if not args.full and n > DEFAULT_LARGEST.get(candidate, 8192):
                continue
            result = run_one(candidate, n, args)
            results.append(result)
            shown = f"{result['time_s']:8.3f} s {result['peak_mb']:9.1f} MiB" if "error" not in result else "error"
            print(f"N={n:6d} {candidate:11s} {shown}", file=sys.stderr, flush=True)
    report = {
        "benchmark": "NT-Xent forward+backward",
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dim": args.dim,
        "temperature": args.temperature,
        "results": results,
        "ratios_vs_lightly": ratios(results),
        "wall_time_s": time.perf_counter() - started,
    }
    try:
        import lightly

        report["lightly"] = lightly.__version__
    except ImportError:
        report["lightly"] = None
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
