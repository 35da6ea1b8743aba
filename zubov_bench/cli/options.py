"""Option types and validators shared by the subcommands."""
from __future__ import annotations

import click

from ..errors import UserError

DEVICE = click.option("--device", default="auto", show_default=True,
                      type=click.Choice(["auto", "cpu", "cuda"]), help="Where to run.")
DATA_ROOT = click.option("--data-root", type=click.Path(file_okay=False), default=None,
                         help="Dataset folder (default $ZUBOV_BENCH_DATA or ~/.cache/zubov-bench/data).")
DOWNLOAD = click.option("--download", is_flag=True, help="Allow torchvision to download missing datasets.")
THREADS = click.option("--threads", default="auto", show_default=True, metavar="N|auto",
                       help="torch CPU threads. auto: one core left free and the cores the load average "
                            "says are busy not counted (at least 1), unless OMP_NUM_THREADS is set; "
                            "torch's own default (one per core) collapses when another process runs.")
CUDA_GRAPHS = click.option("--cuda-graphs", is_flag=True,
                           help="On a CUDA device, replay the fixed-step ODE solver as captured CUDA graphs "
                                "(torch.compile mode reduce-overhead) in training and attacks; on a CPU it does "
                                "nothing (one note).")
PROGRESS = click.option("--progress/--no-progress", default=True, show_default=True,
                        help="Show a progress bar.")
RECHECK = click.option("--recheck", is_flag=True,
                       help="Also recompute the worst cases and sanity checks of the selected models' finished "
                            "runs from their stored records, attacking nothing (after the checks changed).")


def split_names(values) -> tuple[str, ...]:
    """The names of a repeatable NAME[,NAME] option (`--only a,b --only c`), in order, blanks dropped."""
    return tuple(n.strip() for item in values for n in item.split(",") if n.strip())


def apply_threads(spec: str) -> None:
    """Set torch's CPU threads for this command (`--threads`); an in-process caller (a test's
    CliRunner) gets its own count back when the command ends."""
    import torch

    from ..device import configure_threads

    previous = torch.get_num_threads()
    configure_threads(spec)
    click.get_current_context().call_on_close(lambda: torch.set_num_threads(previous))


def apply_cuda_graphs(on: bool, device: str) -> None:
    """`--cuda-graphs` for this command: on where the device is CUDA, else a one-line note."""
    if not on:
        return
    from ..device import resolve_device
    from ..models.ode import use_cuda_graphs

    if resolve_device(device).type != "cuda":
        click.echo("note: --cuda-graphs does nothing without a CUDA device; the solver runs eagerly", err=True)
        return
    previous = use_cuda_graphs(True)
    click.get_current_context().call_on_close(lambda: use_cuda_graphs(previous))


def parse_set_options(values: tuple[str, ...]) -> dict:
    """--set key=value pairs (model config overrides) into a dict of strings."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {item!r}", param_hint="--set")
        out[key.strip()] = value.strip()
    return out


def option_value(value: str | None, option: str, default, kind: type = int):
    """An int or float option parsed here, not by click, so that a bad one is one `error:` line."""
    if value is None:
        return default
    try:
        return kind(str(value).strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UserError(f"{option} must be {what}, got {value!r}") from None
