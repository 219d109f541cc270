"""How every vknet command fails: one line on stderr, a non-zero exit, nothing half-written.

Every CLI is ``main(argv) -> int`` around a typed function that tests call directly::

    def main(argv: Sequence[str] | None = None) -> int:
        args = parse_args(argv)               # cli.ArgumentParser: one line, exit 2
        return run_cli("train.py", lambda: train(args_to_config(args)))

Errors the user can fix (a missing or corrupt file, a wrong preset, a bad value) print as
``train.py: error: <what was received, what was expected>`` with exit 2. Anything else prints
one line naming the exception type, exit 1; ``VKNET_DEBUG=1`` re-raises it for the traceback.
Outputs go through ``vknet_core.atomic`` so that a failure leaves nothing behind.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error the user can fix; its message is the whole story (no traceback is shown)."""


# OSError covers missing files, permissions and full disks; ValueError/KeyError carry the
# project's own validation messages (wrong preset, corrupt checkpoint, bad shapes).
USER_ERRORS: tuple[type[BaseException], ...] = (CliError, OSError, ValueError, KeyError)


def run_cli(prog: str, body: Callable[[], int | None]) -> int:
    """Run ``body``; map its failure to one stderr line and an exit code (0 on success)."""
    try:
        code = body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as e:
        if os.environ.get("VKNET_DEBUG"):
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Exception as e:
        if os.environ.get("VKNET_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(e).__name__}: {_one_line(e)} "
            "(run with VKNET_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR
    return 0 if code is None else int(code)


def _one_line(e: BaseException) -> str:
    text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
    lines = [s.strip() for s in text.splitlines() if s.strip()]
    if not lines:
        return type(e).__name__
    more = f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else ""
    return lines[0] + more


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error: ``prog: error: <message> (see prog --help)``, exit 2.

    argparse's default prints the whole usage block first; a wrong flag is one line like every
    other user error (``--help`` still prints the full usage).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
