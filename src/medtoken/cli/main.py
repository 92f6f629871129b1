"""``medtoken`` entry point: sub-command dispatch, logging, and the error contract.

Every user-facing error is one line on stderr naming the file or option and the problem, exit
code 2 for bad input or usage and 1 for an internal failure; no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from medtoken.utils.errors import InputError

__all__ = ["main"]

# sub-command name -> module in medtoken.cli that defines add_arguments(parser) and run(args)
COMMANDS = {
    "train": "train",
    "predict": "predict",
    "export": "export",
    "evaluate": "evaluate",
    "determine-postprocessing": "determine_postprocessing",
    "postprocess": "postprocess",
    "check-dataset": "check_dataset",
    "plan": "plan",
    "models": "models",
    "demo": "demo",
    "benchmark": "benchmark",
    "compare": "compare",
    "plot": "plot",
    "token-stats": "token_stats",
}


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors follow the one-line, exit-code-2 contract."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError(None, f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from medtoken.utils.version import __version__

    parser = _Parser(prog="medtoken", description="Fast medical image segmentation with "
                     "token-efficient networks.")
    parser.add_argument("--version", action="version", version=f"medtoken {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f"medtoken.cli.{module_name}")
        doc = (module.__doc__ or "").strip().splitlines()[0]
        p = sub.add_parser(name, help=doc, description=doc)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (usable in-process from tests)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        # medtoken's own messages at INFO; other libraries' INFO chatter (numexpr's thread
        # count, ...) stays below the root logger's WARNING
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr,
                            force=True)
        logging.getLogger("medtoken").setLevel(logging.WARNING if args.quiet else logging.INFO)
        code = int(args.run(args))
        sys.stdout.flush()  # a closed pipe fails here, inside the error contract
        return code
    except InputError as err:
        if debug:
            raise
        print(f"medtoken: error: {err}", file=sys.stderr)
        return InputError.exit_code
    except KeyboardInterrupt:
        print("medtoken: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `medtoken models | head`: the reader left; not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)  # the exit-time flush must not fail again
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as err:  # internal failure: one line unless --debug
        if debug:
            raise
        print(f"medtoken: internal error: {type(err).__name__}: {err} (rerun with --debug for "
              "the traceback)", file=sys.stderr)
        return 1
