"""Options shared by several commands, and old option spellings that keep working.

``add_renamed(parser, "--roi-size", old=("--patch-size",), ...)`` adds one argument under both
spellings: the old one stores into the same ``dest`` and logs a deprecation warning (once); only
the new spelling shows in ``--help``, usage lines and error messages.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from medtoken.utils.deprecation import warn_renamed
from medtoken.utils.errors import InputError

__all__ = ["add_out", "add_renamed", "add_spacing", "parse_named"]


class _RenamedStore(argparse._StoreAction):
    """``store``, warning when the option was given under one of its ``old`` spellings."""

    def __init__(self, option_strings: Sequence[str], dest: str, old: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.old = tuple(old)
        self.new = next(s for s in option_strings if s.startswith("--") and s not in self.old)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if option_string in self.old:
            warn_renamed(option_string, self.new)
        super().__call__(parser, namespace, values, option_string)


def add_renamed(p: argparse.ArgumentParser, *names: str, old: Sequence[str],
                **kwargs: Any) -> argparse.Action:
    """Add the option ``names`` that also accepts the deprecated spellings ``old``."""
    action = p.add_argument(*names, *old, action=_RenamedStore, old=old, **kwargs)
    # The parser has registered every spelling for parsing; help, usage and the messages of
    # argparse name an option by ``option_strings``, which keeps only the new ones.
    action.option_strings = list(names)
    return action


def add_out(p: argparse.ArgumentParser, help: str, old: Sequence[str] = (),
            **kwargs: Any) -> argparse.Action:
    """``-o/--out``, the output option of every command (``old``: e.g. ``("--output",)``)."""
    return add_renamed(p, "-o", "--out", old=old, help=help, **kwargs)



def add_spacing(p: argparse.ArgumentParser, default: str | None, help_default: str,
                auto: bool = False) -> argparse.Action:
    """``--spacing WORD|X,Y,Z``, the grid the network sees, of ``train`` and ``predict``.

    Args:
        default: the parsed default (``None``: left to the config the command builds).
        help_default: what the default means, for ``--help``.
        auto: also ``auto`` (``train``: plan for the nnunet models, else native); the words are
            checked by ``data.resample.parse_spacing`` (``predict`` passes it no ``auto``).
    """
    words = ("auto", "plan", "native") if auto else ("plan", "native")
    return p.add_argument(
        "--spacing", default=default, metavar="|".join((*words, "X,Y,Z")),
        help="resample to the target spacing: plan (the nnU-Net plan's, or the one the model "
        "was trained at), native (none: each case's own) or X,Y,Z mm per array axis (default: "
        f"{help_default}); outputs keep the input's geometry")


def parse_named(items: Sequence[str], option: str, what: str) -> dict[str, str]:
    """``NAME=VALUE`` items (``plot pareto --summaries``, ``compare --runs/--summaries``) as a
    dict, split at the last ``=`` (a name may be a model spec such as ``unet3d:channels=[4,8]``,
    a value is a path).

    Raises:
        InputError: an item that is not ``NAME=VALUE``, or a name given twice.
    """
    named: dict[str, str] = {}
    for item in items:
        name, sep, value = item.rpartition("=")
        if not sep or not name or not value:
            raise InputError(option, f"expected NAME={what}, got '{item}'")
        if name in named:
            raise InputError(option, f"'{name}' is given twice")
        named[name] = value
    return named
