"""``python -m wsp_async demo`` (and, later, ``bench``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wsp_async")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="overlapped sends over real loopback sockets, every mechanism")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main()
    return 2


if __name__ == "__main__":
    sys.exit(main())
