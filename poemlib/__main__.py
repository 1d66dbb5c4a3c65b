"""`python -m poemlib …`: the same command line as the `poemlib` script."""

from poemlib.cli import app

app(prog_name="poemlib")
