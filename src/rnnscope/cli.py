"""The ``rnnscope`` command. Thin: it parses arguments and calls the library; heavy imports are lazy."""

from __future__ import annotations

import typer

from rnnscope._version import __version__

app = typer.Typer(
    name="rnnscope",
    help="Train recurrent networks on tasks with hidden discrete structure, then reverse-engineer them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"rnnscope {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """rnnscope command line."""


@app.command()
def presets() -> None:
    """List the built-in configurations."""
    from rnnscope.config import list_presets

    for name, description in list_presets().items():
        typer.echo(f"{name:<14} {description}")


def main() -> None:
    """Entry point of the console script; user errors print one line and exit with status 2."""
    from rnnscope.errors import RnnscopeError

    try:
        app()
    except RnnscopeError as error:
        typer.echo(f"error: {error}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
