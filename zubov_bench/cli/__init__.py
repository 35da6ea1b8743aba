"""The `zubov-bench` command line. Each subcommand lives in its own module."""
from __future__ import annotations

import signal
import sys
import threading

import click

from .. import __version__
from ..errors import UserError


class SuiteGroup(click.Group):
    """Turns UserError (bad input, missing data, corrupt files) and click's usage errors into one line on stderr."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()  # a bare `zubov-bench`: its help, as click shows it
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx else "zubov-bench"
            click.echo(f"error: {exc.format_message()} (see '{command} --help')", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        main_thread = threading.current_thread() is threading.main_thread()
        # `kill` (SIGTERM) unwinds like Ctrl-C, so that worker processes stop with the command
        previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        finally:
            if main_thread:
                signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.group(cls=SuiteGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zubov-bench")
def main():
    """Train and stress-test stable Neural ODE classifiers (Zubov-Net and baselines)."""


def _register_commands() -> None:
    # one module per subcommand; a new command is one more name here
    from . import (certify_cmd, compare_cmd, diff_cmd, eval_cmd, list_cmd, plot_cmd, reproduce_cmd, sweep_cmd,
                   table_cmd, train_cmd)

    for module in (train_cmd, list_cmd, eval_cmd, table_cmd, compare_cmd, diff_cmd, plot_cmd, reproduce_cmd,
                   sweep_cmd, certify_cmd):
        main.add_command(module.command)


_register_commands()
