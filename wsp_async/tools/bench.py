"""``python -m wsp_async bench``: completion mechanisms against raw asyncio, in one run.

Loopback TCP; the receiver is a separate process that only drains.  Every mode
runs in the same run, on the same loop kind and message size as the
``raw-transport`` baseline (plain ``transport.write`` with flow control: what a
user writes without us), and the table reports each mode's ratio to it.

Modes
  raw-transport   asyncio transport.write + pause/resume flow control
  routine         WSPSend on the I/O loop thread, a completion routine per send
  event           WSPSend on the I/O loop thread, an event per send, awaited in batches
  poll            WSPSend on the I/O loop thread, WSPGetOverlappedResult(fWait=False) polling
  blocking-thread non-overlapped blocking WSPSend from a worker thread
  foreign-thread  overlapped WSPSend + routine from a thread that is not the I/O loop's,
                  routines delivered in its alertable SleepEx
  iocp-1, iocp-2  overlapped WSPSend from a plain thread, completed through a completion
                  port drained by 1 or 2 worker threads (GetQueuedCompletionStatusEx)
  aio             ``await sock.send(data)`` on the asyncio face (Winsock's default: Nagle on)
  aio-nodelay     the same with TCP_NODELAY set, as asyncio sets it on its own transports
  streams         ``writer.write(data); await writer.drain()`` (asyncio streams, no wsp_async)

Also measured: completion latency post -> routine (same thread, idle loop, p50/p99),
emulator memory per pending operation (tracemalloc), and peak RSS.

``--cpu same`` runs the sender (this process) and the receiver on one CPU, ``--cpu split``
on two (Linux): where they run decides which of the loopback's two steady states a
64 KiB run falls into (``benchmarks/README.md``).

``--pairs N`` measures instead each mode and raw in N adjacent pairs (raw, then the mode,
back to back) and prints every pair's ratio: the protocol for rows whose baseline swings
from run to run (64 KiB, where raw is bimodal), so that a ratio is never taken across two
states of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
from typing import Any

from .benchmodes import MODES, SIZES, measure, start_receiver
from .benchrates import (
    accept_rate,
    echo_rates,
    latency,
    memory_per_pending_op,
)
from .facepairs import face_versus_streams
from .perop import per_op_cost
from .realbench import real_program_rates


# ----------------------------------------------------------------------------- driver
def place(receiver: Any, cpu: str | None) -> None:
    """Pin this process and the receiver: ``same`` CPU, ``split`` over two, None: leave."""
    if cpu is None:
        return
    if cpu not in ("same", "split"):
        raise SystemExit(f"--cpu is 'same' or 'split', not {cpu!r}")
    cpus = sorted(os.sched_getaffinity(0))
    if cpu == "split" and len(cpus) < 2:
        raise SystemExit("--cpu split needs two CPUs")
    os.sched_setaffinity(0, {cpus[0]})
    os.sched_setaffinity(receiver.pid, {cpus[0] if cpu == "same" else cpus[1]})


def _progress(text: str, end: str = "") -> None:
    """Progress on stderr: one line rewritten in place on a terminal, a line per step elsewhere."""
    if sys.stderr.isatty():
        print(f"\r  {text:<60}", end=end, file=sys.stderr, flush=True)
    elif text:
        print(f"  {text}", file=sys.stderr, flush=True)


def run(
    modes: list[str],
    kinds: list[str],
    sizes: list[int],
    reps: int,
    budget: int,
    nbufs: int,
    quiet: bool = False,
    cap: int = 100_000,
    cpu: str | None = None,
) -> dict[str, Any]:
    receiver, port = start_receiver()
    place(receiver, cpu)
    rows: list[dict[str, Any]] = []
    total = len(modes) * len(kinds) * len(sizes) * reps
    step = 0
    try:
        for kind in kinds:
            for size in sizes:
                count = max(200, min(budget // size, cap))
                times: dict[str, list[float]] = {m: [] for m in modes}
                for rep in range(reps):
                    # Rotate the order so that no mode always runs first (TCP autotuning,
                    # caches and the receiver warm up during a run).
                    for mode in modes[rep % len(modes) :] + modes[: rep % len(modes)]:
                        step += 1
                        if not quiet:
                            _progress(f"[{step:>3}/{total}] {kind:<7} {size:>8} B  {mode:<16}")
                        times[mode].append(measure(mode, kind, port, size, count, nbufs))
                raw = (
                    statistics.median(times["raw-transport"]) if "raw-transport" in times else None
                )
                for mode in modes:
                    med = statistics.median(times[mode])
                    rows.append(
                        {
                            "loop": kind,
                            "size": size,
                            "bufs": nbufs,
                            "mode": mode,
                            "count": count,
                            "seconds": med,
                            "sends_per_s": count / med,
                            "mb_per_s": count * size / med / 1e6,
                            "spread": [count / max(times[mode]), count / min(times[mode])],
                            "ratio_to_raw": (raw / med) if raw else None,
                        }
                    )
        if not quiet:
            _progress("measuring latency and memory...")
        extra = {
            kind: {
                "latency": latency(kind, port),
                "memory": memory_per_pending_op(kind),
                "accept": accept_rate(kind, 100 if budget < (64 << 20) else 2000),
                "per_op": per_op_cost(kind, bursts=20 if budget < (64 << 20) else 100),
                "face_pairs": face_versus_streams(kind, pairs=3 if budget < (64 << 20) else 9),
            }
            for kind in kinds
        }
        if not quiet:
            _progress("measuring echo round trips on the Proactor...")
        echo = echo_rates(seconds=0.1 if budget <= 1 << 20 else 0.5 if budget < 64 << 20 else 2.0)
        if not quiet:
            _progress("measuring real programs on the Proactor (aiohttp, websockets)...")
        small = budget < 64 << 20
        real = real_program_rates(requests=300 if small else 2000, echoes=600 if small else 4000)
    finally:
        receiver.kill()
    if not quiet and sys.stderr.isatty():
        _progress("", end="\r")
    return {
        "rows": rows,
        "extra": extra,
        "echo": echo,
        "real": real,
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def pairs(
    modes: list[str],
    kinds: list[str],
    sizes: list[int],
    n: int,
    nbufs: int,
    budget: int,
    cpu: str | None = None,
) -> list[dict[str, Any]]:
    """Each mode against raw in ``n`` adjacent pairs: raw's rate, the mode's, their ratio."""
    receiver, port = start_receiver()
    place(receiver, cpu)
    out: list[dict[str, Any]] = []
    try:
        for kind in kinds:
            for size in sizes:
                count = max(200, min(budget // size, 100_000))
                for mode in modes:
                    if mode == "raw-transport":
                        continue
                    for i in range(n):
                        _progress(f"pair {i + 1}/{n} {kind:<7} {size:>8} B  {mode:<16}")
                        raw = count / measure("raw-transport", kind, port, size, count, nbufs)
                        rate = count / measure(mode, kind, port, size, count, nbufs)
                        out.append(
                            {
                                "loop": kind,
                                "size": size,
                                "bufs": nbufs,
                                "mode": mode,
                                "pair": i + 1,
                                "raw_per_s": raw,
                                "mode_per_s": rate,
                                "ratio": rate / raw,
                            }
                        )
    finally:
        receiver.kill()
    if sys.stderr.isatty():
        _progress("", end="\r")
    return out


def format_pairs(rows: list[dict[str, Any]]) -> str:
    lines = [
        f"{'loop':<8} {'size':>8} {'bufs':>4} {'mode':<16} {'pair':>4} "
        f"{'raw MB/s':>9} {'mode MB/s':>9} {'ratio':>6}"
    ]
    for r in rows:
        lines.append(
            f"{r['loop']:<8} {r['size']:>8} {r['bufs']:>4} {r['mode']:<16} {r['pair']:>4} "
            f"{r['raw_per_s'] * r['size'] / 1e6:>9.1f} {r['mode_per_s'] * r['size'] / 1e6:>9.1f} "
            f"{r['ratio']:>6.2f}"
        )
    groups: dict[tuple[str, int, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["loop"], r["size"], r["mode"]), []).append(r["ratio"])
    for (kind, size, mode), ratios in groups.items():
        lines.append(
            f"{kind} {size} B {mode}: ratio min {min(ratios):.2f}, "
            f"median {statistics.median(ratios):.2f}, max {max(ratios):.2f} over {len(ratios)} pairs"
        )
    return "\n".join(lines)


def format_table(result: dict[str, Any]) -> str:
    lines = [
        f"{'loop':<8}{'size':>9} {'bufs':>4} {'mode':<16}{'MB/s':>10}{'sends/s':>12}{'x raw':>8}   spread (sends/s)"
    ]
    for r in result["rows"]:
        ratio = f"{r['ratio_to_raw']:.2f}" if r["ratio_to_raw"] else "-"
        lo, hi = r["spread"]
        lines.append(
            f"{r['loop']:<8}{r['size']:>9} {r['bufs']:>4} {r['mode']:<16}{r['mb_per_s']:>10.1f}"
            f"{r['sends_per_s']:>12.0f}{ratio:>8}   {lo:.0f}-{hi:.0f}"
        )
    for kind, extra in result["extra"].items():
        lat, mem = extra["latency"], extra["memory"]
        lines.append(
            f"{kind}: post->routine latency p50 {lat['p50_us']:.1f} us, p99 {lat['p99_us']:.1f} us; "
            f"emulator memory per pending op {mem['bytes_per_op']:.0f} B "
            f"({mem['pending_ops']} pending sends of {mem['payload_bytes']} B)"
        )
        per = extra["per_op"]
        lines.append(
            f"{kind}: WSPSend + routine on the loop thread {per['per_op_us']:.2f} us per op, "
            f"{per['ratio']:.1f}x a pure-Python floor of {per['floor_us']:.3f} us (issue 26)"
        )
        fp = extra["face_pairs"]
        lines.append(
            f"{kind}: the face against asyncio streams at {fp['size']} B, {fp['count']} messages "
            f"per fresh connection, TCP_NODELAY on both, timed until the receiver read it "
            f"all: median of {fp['pairs']} adjacent "
            f"pairs {fp['median']:.2f}x (range {fp['min']:.2f}-{fp['max']:.2f})"
        )
        acc = extra["accept"]
        lines.append(
            f"{kind}: accepts/s asyncio.start_server {acc['asyncio_per_s']:.0f}, "
            f"AcceptEx through a port {acc['acceptex_per_s']:.0f} ({acc['ratio']:.2f}x), "
            f"AcceptEx awaited {acc['face_per_s']:.0f} ({acc['face_ratio']:.2f}x)"
        )
    for size, echo in result.get("echo", {}).items():
        lines.append(
            f"echo round trips/s at {size} B (asyncio streams): selector {echo['asyncio']:.0f}, "
            f"uvloop {echo['uvloop']:.0f}, ProactorEventLoop over wsp_async {echo['proactor']:.0f} "
            f"({echo['ratio_to_asyncio']:.2f}x selector); the asyncio face "
            f"{echo['face-asyncio']:.0f} on asyncio ({echo['face_ratio_asyncio']:.2f}x streams), "
            f"{echo['face-uvloop']:.0f} on uvloop ({echo['face_ratio_uvloop']:.2f}x streams)"
        )
    for name, row in result.get("real", {}).items():
        unit = "requests/s (aiohttp)" if name == "http" else "echoes/s (websockets)"
        lines.append(
            f"real program, {name} {unit}: selector {row['selector']:.0f}, "
            f"ProactorEventLoop over wsp_async {row['proactor']:.0f} ({row['ratio']:.2f}x selector; "
            f"errors logged and sockets leaked: selector {row['selector_faults']:.0f}, "
            f"Proactor {row['proactor_faults']:.0f})"
        )
    lines.append(f"peak RSS {result['peak_rss_kib'] / 1024:.1f} MiB")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["loop"] for r in result["rows"]})
    modes = list(dict.fromkeys(r["mode"] for r in result["rows"]))
    sizes = sorted({r["size"] for r in result["rows"]})
    fig, axes = plt.subplots(1, len(kinds) + 1, figsize=(6 * (len(kinds) + 1), 4.5))
    for ax, kind in zip(axes, kinds, strict=False):
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            ys = [
                next(
                    (
                        r["mb_per_s"]
                        for r in result["rows"]
                        if r["loop"] == kind and r["size"] == s and r["mode"] == mode
                    ),
                    0,
                )
                for s in sizes
            ]
            ax.bar([j + i * width for j in range(len(sizes))], ys, width, label=mode)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [f"{s} B" for s in sizes])
        ax.set_yscale("log")
        ax.set_ylabel("MB/s")
        ax.set_title(f"throughput ({kind})")
    axes[0].legend(fontsize=7)
    lat_ax = axes[-1]
    lat = [(k, result["extra"][k]["latency"]) for k in kinds]
    lat_ax.bar(
        [f"{k} p50" for k, _ in lat] + [f"{k} p99" for k, _ in lat],
        [v["p50_us"] for _, v in lat] + [v["p99_us"] for _, v in lat],
    )
    lat_ax.set_ylabel("microseconds")
    lat_ax.set_title("post -> routine latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wsp_async bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small budget, 2 repetitions (under a minute)"
    )
    parser.add_argument("--reps", type=int, help="repetitions per measurement (median and spread)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--loops", default="uvloop,asyncio")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--bufs", type=int, default=1, help="WSABUFs per send (scatter/gather)")
    parser.add_argument("--cpu", choices=("same", "split"), help="pin sender and receiver")
    parser.add_argument(
        "--pairs", type=int, metavar="N", help="N adjacent (raw, mode) pairs per row instead"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON ('-' for stdout)")
    parser.add_argument(
        "--plot", metavar="PNG", help="draw throughput and latency (needs matplotlib)"
    )
    args = parser.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    if "raw-transport" not in modes:
        modes.insert(0, "raw-transport")
    reps = args.reps or (2 if args.quick else 5)
    budget = (16 << 20) if args.quick else (256 << 20)
    cap = 20_000 if args.quick else 100_000
    if args.pairs:
        rows = pairs(
            modes,
            args.loops.split(","),
            [int(s) for s in args.sizes.split(",")],
            args.pairs,
            args.bufs,
            budget,
            args.cpu,
        )
        print(format_pairs(rows))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
        return 0
    result = run(
        modes,
        args.loops.split(","),
        [int(s) for s in args.sizes.split(",")],
        reps,
        budget,
        args.bufs,
        quiet=args.json == "-",
        cap=cap,
        cpu=args.cpu,
    )
    if args.json == "-":
        json.dump(result, sys.stdout, indent=1)
        return 0
    print(format_table(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0
