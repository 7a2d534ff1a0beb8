"""``fastrank`` command line: thin typer wrappers over functions that return data."""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from fastrank.cli.bench import bench_command
from fastrank.cli.evaluate import eval_command
from fastrank.cli.export import export_command
from fastrank.cli.mine import mine_command
from fastrank.cli.rerank import rerank_command
from fastrank.cli.serve import serve_command
from fastrank.cli.train import demo_command, train_command

app = typer.Typer(
    name="fastrank",
    help="Train, evaluate, export and serve cross-encoder rerankers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from fastrank import __version__

        typer.echo(f"fastrank {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                 help="Print fastrank's version and exit.")] = False) -> None:
    """Train, evaluate, export and serve cross-encoder rerankers."""


app.command("train")(train_command)
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("mine")(mine_command)
app.command("export")(export_command)
app.command("rerank")(rerank_command)
app.command("bench")(bench_command)
app.command("serve")(serve_command)


def _exit_on_sigterm() -> None:
    """SIGTERM (a scheduler's stop, ``kill``) unwinds the command as an exit with status 143: an unfinished export,
    training or mining removes its temporary directory instead of leaving it behind, as on Ctrl-C. ``serve`` installs
    uvicorn's own handlers (graceful drain) while it runs."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


# ``name=value`` (a value quoted, or a word that is not None), and a parameter name opening the message (its
# subject, as in "window_stride must be ..."); never inside quotes (a path, a key or a query the user gave), after
# "'s" (another object's attribute), or next to path characters.
_ASSIGNMENT = re.compile(r"(?<![\w./\\:'\"-])(?<!'s )([a-z][a-z0-9_]*)=('[^']*'|(?!None\b)[\w.-]+)")
_SUBJECT = re.compile(r"^([a-z][a-z0-9]*_[a-z0-9_]*)(?= )")
_SUBJECT_WORD = re.compile(r"^([a-z][a-z0-9]*)(?= must )")  # "epochs must ...": a one-word name, as a subject only
_QUOTED = re.compile(r"(?<!\w)'[^']*'(?!\w)|\"[^\"]*\"")


def in_cli_words(message: str, args: list[str]) -> str:
    """``message`` with the library's parameters (``window_stride must ...``, ``backend='torch'``) written as the
    invoked command's own flags (``--window-stride must ...``, ``--backend torch``), so an error from the Python API
    reads in the words the user typed. Only names that are options of that command change, and only as the
    message's subject or in ``name=value``; quoted text (paths, keys, queries) is left as it is."""
    if not isinstance(app, typer.Typer):
        return message
    command = typer.main.get_command(app)
    sub = getattr(command, "commands", {}).get(args[0]) if args else None
    if sub is None:
        return message
    options = {p.name: p for p in sub.params if getattr(p, "param_type_name", "") == "option"}
    flags = {name: next((o for o in p.opts if o.startswith("--")), None) for name, p in options.items()}
    quoted = [m.span() for m in _QUOTED.finditer(message)]

    def swap(match: re.Match) -> str:
        flag = flags.get(match.group(1))
        if flag is None or any(start <= match.start() < end for start, end in quoted):
            return match.group(0)
        value = match.group(2) if match.lastindex and match.lastindex > 1 else None
        if value is None:
            return flag
        if getattr(options[match.group(1)], "is_flag", False) and value in ("True", "False"):  # a flag takes no value
            off = next(iter(getattr(options[match.group(1)], "secondary_opts", None) or []), None)
            return flag if value == "True" else (off or f"without {flag}")
        return f"{flag} {value.strip(chr(39))}"

    return _SUBJECT_WORD.sub(swap, _SUBJECT.sub(swap, _ASSIGNMENT.sub(swap, message)))


def interrupted_note(args: list[str]) -> str:
    """What a command stopped by Ctrl-C left: no output half written (each is written to a temporary path and
    renamed into place when whole), and for ``train`` the checkpoints ``--resume`` continues from."""
    note = "interrupted: nothing unfinished was written (outputs are renamed into place only when whole)"
    if args[:1] == ["train"]:
        note += ("; the checkpoints of finished epochs stay in OUT.checkpoints: run the same command with --resume to "
                 "continue from the last one")
    return note


def main() -> None:
    """Console-script entry point; bad input ends with a one-line error instead of a traceback."""
    from fastrank.errors import FastrankError

    _exit_on_sigterm()
    try:
        app()
    except SystemExit as exc:
        if exc.code == 130:  # Ctrl-C: typer ends the command with status 130 and says nothing
            typer.secho(interrupted_note(sys.argv[1:]), err=True, fg=typer.colors.YELLOW)
        raise
    except (FastrankError, ValueError, TypeError) as exc:
        typer.secho(f"error: {in_cli_words(str(exc), sys.argv[1:])}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None
    except ModuleNotFoundError as exc:  # a command of an extra not installed (train without torch): name it
        from fastrank.errors import missing_dependency

        missing = missing_dependency(exc, f"fastrank {sys.argv[1] if len(sys.argv) > 1 else ''}".strip())
        if missing is None:
            raise
        typer.secho(f"error: {missing}", err=True, fg=typer.colors.RED)
        raise SystemExit(2) from None
    except OSError as exc:  # the system refused a read or write (disk full, permissions): say so, no traceback
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise SystemExit(1) from None
