"""User-facing errors.

Every error that a user can cause (a bad file, a bad option) is raised as :class:`InputError`;
the CLI prints it as one line and exits with code 2. Anything else is an internal failure
(exit code 1).
"""

from __future__ import annotations

from os import PathLike

__all__ = ["InputError"]


class InputError(Exception):
    """Bad input or usage: one line naming the file or option and the problem.

    Args:
        where: the file, folder or option at fault (``None`` when nothing more specific applies).
        problem: what is wrong, phrased so that the user can act on it.
    """

    exit_code = 2

    def __init__(self, where: str | PathLike[str] | None, problem: str) -> None:
        self.where = None if where is None else str(where)
        self.problem = problem
        super().__init__(problem if self.where is None else f"{self.where}: {problem}")
