"""``python -m optax_l1``: L1 in the loss vs proximal steps (see _demo.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional


def main(argv: Optional[Sequence[str]] = None) -> None:
  """Runs the demo. Returns ``None`` so the console script exits with 0.

  (``optax_l1._demo.main`` returns the results dict; a console script would
  pass that dict to ``sys.exit`` and exit with status 1.)
  """
  from optax_l1._demo import main as demo_main  # pylint: disable=g-import-not-at-top
  demo_main(argv)


if __name__ == "__main__":
  main()
