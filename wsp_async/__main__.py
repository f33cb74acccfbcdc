"""``python -m wsp_async demo|bench|timeline|cpython-suite``: the tools of
:mod:`wsp_async.tools`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsp_async")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="overlapped sends over real loopback sockets, every mechanism")
    sub.add_parser(
        "bench", help="completion mechanisms against raw asyncio (see --help)", add_help=False
    )
    sub.add_parser(
        "cpython-suite",
        help="CPython's own Proactor tests on Linux over wsp_async (see --help)",
        add_help=False,
    )
    timeline = sub.add_parser(
        "timeline", help="print a JSON-lines trace (JsonLinesTracer) as a table"
    )
    timeline.add_argument("path")
    args, rest = parser.parse_known_args(argv)
    if args.command == "timeline":
        from .trace import format_timeline, read_trace

        print(format_timeline(read_trace(args.path)))
        return 0
    if args.command == "bench":
        from .tools.bench import main as bench_main

        return bench_main(rest)
    if args.command == "cpython-suite":
        from .tools.cpython_suite import main as suite_main

        return suite_main(rest)
    if args.command == "demo":
        from .tools.demo import main as demo_main

        return demo_main()
    return 2


if __name__ == "__main__":
    sys.exit(main())
