"""`autorag-hp` command line: one module per subcommand, registered in ``_COMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main"]

# name -> module (relative to this package) that defines ``add_parser(subparsers)`` and ``run(args) -> int``.
_COMMANDS = {
    "tune": "._tune",
    "grid": "._grid",
    "bench": "._bench",
    "report": "._report",
    "serve": "._serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autorag-hp",
        description="Tune RAG hyperparameters with hierarchical multi-armed bandits.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in _COMMANDS.items():
        try:
            mod = importlib.import_module(module, __name__)
        except ModuleNotFoundError as exc:  # a subcommand whose module is not written yet
            if exc.name and exc.name.startswith(__name__):
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"autorag-hp {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"autorag-hp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
