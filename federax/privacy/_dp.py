"""`dp_accounting`, the optional dependency every accounting function needs, imported on use."""

from __future__ import annotations

from typing import Any

EXTRA = "pip install 'federax[privacy]'"


def dp_accounting(where: str) -> Any:
  """The `dp_accounting` module, or an ImportError naming `where` and the extra to install."""
  try:
    import dp_accounting as module  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(f"{where} needs the dp-accounting package, an optional dependency of "
                      f"federax: {EXTRA}") from e
  return module
