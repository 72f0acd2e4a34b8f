"""`forecast-console` entry point.

No sub-command opens the Textual console; every sub-command runs headless. Sub-commands live in
`console/commands/<group>.py`, each exposing `register(subparsers)`, and import heavy modules
only inside their handlers so `forecast-console --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# Groups of sub-commands, in the order --help lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "console.commands.data_cmds",      # data synth, data check
    "console.commands.baseline_cmd",   # baseline
    "console.commands.jobs_cmds",      # run, jobs, attach, cancel, retry
    "console.commands.engine_cmds",    # engine start | stop | status
    "console.commands.train_cmd",      # train
    "console.commands.eval_cmds",      # validate, compare, regression, sweep, calibrate, pipeline
    "console.commands.store_cmds",     # runs, best, promote, rollback, report
    "console.commands.forecast_cmd",   # forecast
    "console.commands.gc_cmd",         # gc
)


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


PROG = "forecast-console"


def _add_global_options(parser: argparse.ArgumentParser) -> None:
    """The options before any command (the console's own, and every command's folders and backend)."""
    parser.add_argument("--workspace", "-w", help="workspace folder (default ./forecast-runs, or $FORECAST_WORKSPACE)")
    parser.add_argument("--data", help="folder of SYMBOL.csv files (default ./trainingdata, or $FORECAST_DATA)")
    parser.add_argument("--hyperparams", help="promoted-config folder (default ./hyperparams, or $FORECAST_HYPERPARAMS)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local", help="where jobs run (default local)")
    parser.add_argument("--address", default=None, help="Ray address for --backend ray (auto, ray://host:10001)")
    parser.add_argument("--no-warm", action="store_true",
                        help="run every job in a new process (no warm workers for short jobs; or $FORECAST_WARM=0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Fine-tune, validate, compare and promote time-series forecasting models per stock. "
        "With no command, opens the console.",
    )
    _add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod_name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as exc:
            if exc.name == mod_name:  # group not built yet
                continue
            raise
        mod.register(sub)
    return parser


class _NotTheConsole(Exception):
    """The arguments are not the console's launch (a command, --help, a usage error): build_parser reads them."""


class _ConsoleParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _NotTheConsole(message)


def console_args(argv: Sequence[str] | None) -> argparse.Namespace | None:
    """The global options when `argv` names no command (the console is opened), else None.

    Why: building the full parser imports every command group and generates each job kind's flags
    from its parameter model (engine.task_params, pydantic): ~0.3 s of a launch that opens the
    console and needs none of it. Anything else (a command, --help, a bad option) is left to
    `build_parser`, so its usage, help and errors are the full parser's."""
    quick = _ConsoleParser(prog=PROG, add_help=False)
    _add_global_options(quick)
    try:
        args, rest = quick.parse_known_args(argv)
    except _NotTheConsole:
        return None
    if rest:
        return None
    args.command = None
    return args


def _apply_global_env(args: argparse.Namespace) -> None:
    """Flags become env vars so worker subprocesses resolve the same folders."""
    from engine import paths

    if args.workspace:
        os.environ[paths.ENV_WORKSPACE] = str(paths.workspace_dir(args.workspace))
    if args.data:
        data = os.path.abspath(os.path.expanduser(args.data))
        if os.path.exists(data) and not os.path.isdir(data):
            # A CSV given as --data would otherwise read as "no SYMBOL.csv files in X.csv".
            raise CliError(f"--data {args.data} is a file; give the folder that holds SYMBOL.csv files "
                           "(check one file with `forecast-console data check FILE`)")
        os.environ[paths.ENV_DATA] = data
    if args.hyperparams:
        os.environ[paths.ENV_HYPERPARAMS] = str(paths.hyperparams_dir(args.hyperparams))
    from engine.backends import ENV_BACKEND, ENV_RAY_ADDRESS

    if args.address and args.backend != "ray":
        raise CliError("--address only applies to --backend ray")
    os.environ[ENV_BACKEND] = args.backend
    if args.no_warm:
        from engine.backends.pool import ENV_WARM

        os.environ[ENV_WARM] = "0"
    if args.address:
        os.environ[ENV_RAY_ADDRESS] = args.address


def run_console(args: argparse.Namespace) -> int:
    """The Textual console on the workspace the global options name (no sub-command given)."""
    from pathlib import Path

    from console.app import ForecastConsoleApp
    from console.services import ConsoleServices

    data_dirs = None
    workspace = getattr(args, "workspace", None)
    if getattr(args, "data", None):
        from engine import paths

        ws = paths.workspace_dir(workspace)
        data_dirs = [Path(args.data).expanduser().resolve()]
        if (ws / "data").is_dir():
            data_dirs.append(ws / "data")
    services = ConsoleServices(
        workspace, data_dirs=data_dirs, hyperparams_dir=getattr(args, "hyperparams", None),
        backend=getattr(args, "backend", "local") or "local", address=getattr(args, "address", None),
    )
    result = ForecastConsoleApp(services).run()
    return int(result or 0)


def _exit_now(rc: int) -> None:
    """End the program without the interpreter's teardown, output flushed first. A command that
    loaded torch sets `exit_without_teardown` (forecast): unloading torch's modules at exit costs
    ~0.9 s of CPU, a fifth of `forecast`'s 5 s budget, and such a command has nothing left to clean
    up. Only when run as the program (argv None), never for an in-process call."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


def main(argv: Sequence[str] | None = None) -> int:
    args = console_args(argv)
    if args is None:
        args = build_parser().parse_args(argv)
    try:
        _apply_global_env(args)
        if args.command is None:
            return run_console(args) or 0
        rc = args.func(args) or 0
        if argv is None and getattr(args, "exit_without_teardown", False):
            _exit_now(rc)
        return rc
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except CliError as exc:
        print(f"forecast-console: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        # Our own error types (DataError, SymbolError, JobSpecError, StoreError...) subclass these
        # and carry a message written for the user.
        print(f"forecast-console: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Re-import so `python -m console.cli` catches the same CliError class the commands raise.
    from console.cli import main as _main

    sys.exit(_main())
