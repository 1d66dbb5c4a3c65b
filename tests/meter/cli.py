"""The `check` command alone in a Typer app, isolated from the other stages' commands."""

from __future__ import annotations

import typer


def check_app() -> typer.Typer:
    """A Typer app holding only the check command."""
    from poemlib.commands import check as check_command

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Group so that `check` stays a sub-command."""

    check_command.register(app)
    return app
