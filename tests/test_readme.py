"""The README's quick start runs and solves the lasso it writes down."""

import pathlib
import re

import numpy as np
from sklearn.linear_model import Lasso

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_quick_start_matches_sklearn(capsys):
  text = README.read_text()
  block = re.search(r"## Quick start.*?```python\n(.*?)```", text, re.S).group(1)
  scope = {}
  exec(compile(block, "README quick start", "exec"), scope)  # pylint: disable=exec-used
  capsys.readouterr()
  X = np.asarray(scope["X"], np.float64)
  y = np.asarray(scope["y"], np.float64)
  ref = Lasso(alpha=0.1, tol=1e-12, max_iter=100_000).fit(X, y)
  kernel = np.asarray(scope["params"]["kernel"])
  np.testing.assert_array_equal(kernel == 0, ref.coef_ == 0)
  np.testing.assert_allclose(kernel, ref.coef_, atol=1e-4)
  np.testing.assert_allclose(scope["params"]["bias"], ref.intercept_, atol=1e-4)
  assert np.count_nonzero(kernel == 0) == 8


def test_optimizer_table_matches_what_proximal_does():
  """Every optax alias is in the README's table with the status that
  test_metric.py checks (accepted ones reach sklearn, refused ones raise)."""
  import test_metric  # pylint: disable=g-import-not-at-top
  text = README.read_text()
  table = re.search(r"### Which optimizers.*?\n(\|.*?)\n\n", text, re.S)
  status = {}
  for row in table.group(1).splitlines()[2:]:
    cells = [c.strip() for c in row.strip("|").split("|")]
    for name in re.findall(r"`(\w+)`", cells[0]):
      status[name] = cells[1]
  want = {**{n: "supported" for n in test_metric.ACCEPTED},
          **{n: "refused" for n in test_metric.REFUSED}}
  assert status == want
