"""``ctxplane-run``: run a command with ctxplane activated in every Python process.

It sets ``CTXPLANE_AUTO=1`` (plus the variables given by options), puts the
directory holding ctxplane's ``sitecustomize`` first on ``PYTHONPATH``, and then
replaces itself with the command (``os.execvpe``, the command found on ``PATH``),
so exit status and signals are the command's own. The environment is inherited by
every process the command starts, so Python subprocesses are activated too.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["USAGE", "build_env", "check_patch_names", "main", "parse_args"]

USAGE = """\
usage: ctxplane-run [options] [--] command [args...]

Run command with ctxplane activated in it and in every Python process it starts.

examples:
  ctxplane-run python app.py
  ctxplane-run python -m mypackage
  ctxplane-run -p asyncio,aiohttp -- gunicorn app:app

options:
  -h, --help               show this help and exit
  --version                show the ctxplane version and exit
  -p, --patches LIST       install only these patches (CTXPLANE_PATCHES)
  -d, --disable LIST       never install these patches (CTXPLANE_DISABLED_PATCHES)
  -l, --log-level LEVEL    ctxplane log level (CTXPLANE_LOG_LEVEL)
  -t, --trace-file PATH    write the local trace to PATH (CTXPLANE_TRACE_FILE)

Every other CTXPLANE_* variable already set in the environment is passed on.
The command is looked up on PATH and replaces ctxplane-run (exec).
"""

# option -> environment variable it sets
_VALUE_OPTIONS = {
    "-p": "CTXPLANE_PATCHES",
    "--patches": "CTXPLANE_PATCHES",
    "-d": "CTXPLANE_DISABLED_PATCHES",
    "--disable": "CTXPLANE_DISABLED_PATCHES",
    "-l": "CTXPLANE_LOG_LEVEL",
    "--log-level": "CTXPLANE_LOG_LEVEL",
    "-t": "CTXPLANE_TRACE_FILE",
    "--trace-file": "CTXPLANE_TRACE_FILE",
}


class UsageError(Exception):
    """A command line ``ctxplane-run`` cannot run."""


def parse_args(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Split *argv* into (variables set by options, command).

    Options stop at the first argument that is not an option, or after ``--``.
    ``-h``/``--version`` return the pseudo variables ``help``/``version``.
    """
    settings: dict[str, str] = {}
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-h", "--help"):
            return {"help": "1"}, []
        if arg == "--version":
            return {"version": "1"}, []
        name, eq, value = arg.partition("=")
        if name in _VALUE_OPTIONS and name.startswith("--") and eq:
            settings[_VALUE_OPTIONS[name]] = value
            i += 1
            continue
        if arg in _VALUE_OPTIONS:
            if i + 1 >= len(args):
                raise UsageError(f"option {arg} needs a value")
            settings[_VALUE_OPTIONS[arg]] = args[i + 1]
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            raise UsageError(f"unknown option {arg}")
        break
    command = args[i:]
    if not command:
        raise UsageError("no command given")
    return settings, command


_OPTION_OF = {"CTXPLANE_PATCHES": "-p", "CTXPLANE_DISABLED_PATCHES": "-d"}


def check_patch_names(settings: Mapping[str, str]) -> None:
    """Raise :class:`UsageError` if ``-p``/``-d`` name a patch this interpreter does not know
    (the built-ins and the ``ctxplane.patches`` entry points), listing the valid names."""
    from ctxplane.config import _names

    known: list[str] | None = None
    for var, option in _OPTION_OF.items():
        if var not in settings:
            continue
        if known is None:
            from ctxplane.patches import available

            known = list(available())
        keywords = ("all", "*", "none") if option == "-p" else ()
        unknown = [n for n in _names(settings[var]) if n not in known and n not in keywords]
        if unknown:
            valid = ", ".join([*(("all", "none") if keywords else ()), *known])
            raise UsageError(
                f"unknown patch {', '.join(map(repr, unknown))} in {option}; valid names: {valid}"
            )


def _bootstrap_dir() -> str:
    from ctxplane.bootstrap import BOOTSTRAP_DIR

    return BOOTSTRAP_DIR


def build_env(environ: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    """The environment for the command: *environ* + *settings* + activation variables."""
    env = dict(environ)
    env.update(settings)
    env["CTXPLANE_AUTO"] = "1"
    env.pop("CTXPLANE_ACTIVE", None)  # set again by activation in the command's process
    env.pop("CTXPLANE_WARNED", None)  # a new run reports its config problems again
    boot = _bootstrap_dir()
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != boot]
    # No empty entry: an empty PYTHONPATH entry would put the current directory on sys.path.
    env["PYTHONPATH"] = os.pathsep.join([boot, *rest])
    return env


def _fail(message: str, status: int) -> int:
    sys.stderr.write(f"ctxplane-run: {message}\n")
    return status


def _exec(command: Sequence[str], env: Mapping[str, str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(command[0], list(command), env)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``ctxplane-run``; returns an exit status only on failure."""
    try:
        settings, command = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        sys.stderr.write(USAGE)
        return _fail(str(exc), 2)
    if "help" in settings:
        sys.stdout.write(USAGE)
        return 0
    if "version" in settings:
        from importlib.metadata import PackageNotFoundError, version

        try:
            sys.stdout.write(f"ctxplane {version('ctxplane')}\n")
        except PackageNotFoundError:
            sys.stdout.write("ctxplane (not installed)\n")
        return 0
    try:
        check_patch_names(settings)
    except UsageError as exc:
        return _fail(str(exc), 2)
    env = build_env(os.environ, settings)
    try:
        _exec(command, env)
    except FileNotFoundError:
        return _fail(f"{command[0]}: command not found", 127)
    except PermissionError:
        return _fail(f"{command[0]}: permission denied", 126)
    except OSError as exc:
        return _fail(f"{command[0]}: {exc.strerror or exc}", 126)


if __name__ == "__main__":
    sys.exit(main())
