"""Old spellings that still work: a logged warning, once per spelling and process.

Used for renamed options (``--patch-size`` → ``--roi-size``, ``--output`` → ``--out``), renamed
config keys (see ``RENAMED`` on config dataclasses, applied by :mod:`medtoken.config`) and renamed
``--sweep`` keys. The warning is a log record (``medtoken.deprecation``, level WARNING), so the
CLI prints it as one line on stderr.
"""

from __future__ import annotations

import logging

__all__ = ["warn_renamed"]

log = logging.getLogger("medtoken.deprecation")
_WARNED: set[str] = set()  # old spellings already warned about in this process


def warn_renamed(old: str, new: str) -> None:
    """Log that ``old`` is a deprecated spelling of ``new`` (the first time only)."""
    if old in _WARNED:
        return
    _WARNED.add(old)
    log.warning("'%s' is deprecated; use '%s' (the old spelling will be removed in a future "
                "release)", old, new)
