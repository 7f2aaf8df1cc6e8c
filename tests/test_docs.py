"""The documentation covers the package, checked without building it.

Every name in ``optax_l1.__all__`` and ``optax_l1.ops.__all__`` has an entry
(an ``auto*`` directive) in the API reference sources, ``docs/api/*.rst``,
and every entry there is a public name (a stale one would fail the Sphinx
build). ``help(optax_l1)`` opens with the overview and its example. The
Sphinx build itself (HTML with warnings as errors, and the pages' code blocks
as doctests) runs in ``.ci/run``.
"""

from __future__ import annotations

import pathlib
import pydoc
import re
import types

import optax_l1
from optax_l1 import ops

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"
API = DOCS / "api"

_DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(auto(?:function|class|data|attribute|exception|decorator"
    r"|module)|currentmodule|module)::\s*(\S+)\s*$")


def _api_entries() -> dict[str, list[str]]:
  """Fully qualified name -> the API pages with an ``auto*`` entry for it."""
  entries: dict[str, list[str]] = {}
  for page in sorted(API.glob("*.rst")):
    module = "optax_l1"
    for line in page.read_text().splitlines():
      m = _DIRECTIVE.match(line)
      if m is None:
        continue
      kind, name = m.groups()
      if kind in ("currentmodule", "module"):
        module = name
        continue
      if kind == "automodule":
        module = name
        full = name
      elif name.startswith("optax_l1.") or name == "optax_l1":
        full = name
      else:
        full = f"{module}.{name}"
      entries.setdefault(full, []).append(page.name)
  return entries


def _public() -> set[str]:
  names = {f"optax_l1.{n}" for n in optax_l1.__all__}
  names |= {f"optax_l1.ops.{n}" for n in ops.__all__}
  names |= {f"optax_l1.selection.{n}" for n in optax_l1.selection.__all__}
  return names


def test_api_pages_exist():
  assert (DOCS / "conf.py").is_file()
  assert (DOCS / "index.md").is_file()
  pages = {p.name for p in API.glob("*.rst")}
  assert {"index.rst", "ops.rst", "transformations.rst", "proximal.rst",
          "masks.rst", "reports.rst", "export.rst",
          "selection.rst"} <= pages


def test_every_public_name_has_an_api_entry():
  """``optax_l1.__all__`` is read now, so names added later are checked."""
  entries = _api_entries()
  missing = []
  for name in optax_l1.__all__:
    obj = getattr(optax_l1, name)
    if isinstance(obj, types.ModuleType):
      want = obj.__name__  # a submodule: its automodule entry
    else:
      want = f"optax_l1.{name}"
    if want not in entries:
      missing.append(name)
  assert not missing, (
      f"names in optax_l1.__all__ without an entry in docs/api/*.rst: "
      f"{missing}. Add one line per name, e.g. `.. autofunction:: NAME` "
      "(or `.. autoclass:: NAME`) on the page of its layer, and the name to "
      "that page's autosummary list.")


def test_every_ops_name_has_an_api_entry():
  entries = _api_entries()
  missing = [n for n in ops.__all__ if f"optax_l1.ops.{n}" not in entries]
  missing += [n for n in optax_l1.selection.__all__
              if f"optax_l1.selection.{n}" not in entries]
  assert not missing, (
      f"names in optax_l1.ops.__all__ without an entry in docs/api/ops.rst: "
      f"{missing}. Add `.. autofunction:: NAME` there.")


def test_every_api_entry_is_a_public_name_documented_once():
  entries = _api_entries()
  documented = {n for n in entries
                if n not in ("optax_l1", "optax_l1.ops", "optax_l1.selection")}
  stale = sorted(documented - _public())
  assert not stale, (f"docs/api/*.rst documents names that are not in "
                     f"__all__ (removed or renamed?): {stale}")
  twice = {n: pages for n, pages in entries.items() if len(pages) > 1
           and n != "optax_l1.ops"}
  assert not twice, f"documented more than once: {twice}"


def test_every_autosummary_lists_only_names_documented_on_its_page():
  """The summary table at the top of each page matches its entries."""
  entries = _api_entries()
  for page in sorted(API.glob("*.rst")):
    text = page.read_text()
    module = "optax_l1"
    m = re.search(r"^\.\. currentmodule::\s*(\S+)", text, re.M)
    if m:
      module = m.group(1)
    for block in re.finditer(r"^\.\. autosummary::\n\n((?:   \S.*\n)+)",
                             text, re.M):
      for name in block.group(1).split():
        full = f"{module}.{name}"
        assert page.name in entries.get(full, []), (
            f"{page.name}: {name} is in the autosummary list but has no "
            "entry on this page")


def test_help_opens_with_the_overview_and_example():
  text = pydoc.plain(pydoc.render_doc(optax_l1))
  first_line = optax_l1.__doc__.strip().splitlines()[0]
  assert first_line.startswith("optax_l1: ")
  assert f"optax_l1 - {first_line}" in text
  description = text.split("DESCRIPTION", 1)[1]
  overview = optax_l1.__doc__.strip().split("\n\n")[1].splitlines()[0]
  assert description.lstrip().startswith(overview.strip())
  head = description.split("PACKAGE CONTENTS", 1)[0]
  assert "Main entry points" in head
  for name in ("proximal", "prox_l1", "prox_group_lasso", "magnitude_prune",
               "mask_by_path", "sparsity_report", "optax_l1.ops"):
    assert f"``{name}" in head, name
  assert ">>> opt = optax_l1.proximal(" in head


def test_images_exist_and_are_shown():
  static = DOCS / "_static"
  shown = set()
  for page in list(DOCS.rglob("*.md")) + list(DOCS.rglob("*.rst")):
    if "_build" in page.parts:
      continue
    for ref in re.findall(r"_static/([\w.-]+\.png)", page.read_text()):
      assert (static / ref).is_file(), f"{page}: missing _static/{ref}"
      shown.add(ref)
  unused = {p.name for p in static.glob("*.png")} - shown
  assert not unused, f"PNGs in docs/_static that no page shows: {unused}"


def test_guide_optimizer_table_matches_what_proximal_does():
  """The guide's table of optax aliases has the status test_metric checks."""
  import test_metric  # pylint: disable=g-import-not-at-top
  text = (DOCS / "guides" / "which_transformation.md").read_text()
  table = re.search(r"## Which optimizers.*?\n(\|.*?)\n\n", text, re.S)
  status = {}
  for row in table.group(1).splitlines()[2:]:
    cells = [c.strip() for c in row.strip("|").split("|")]
    for name in re.findall(r"`(\w+)`", cells[0]):
      status[name] = cells[1]
  want = {**{n: "supported" for n in test_metric.ACCEPTED},
          **{n: "refused" for n in test_metric.REFUSED}}
  assert status == want
