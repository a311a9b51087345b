"""The `federax` command: `train`, `resume`, `plot` and `datasets` (see `federax --help`)."""

from federax.cli.main import main as main

__all__ = ["main"]
