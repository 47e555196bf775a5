"""pyproject.toml lists its packages by hand (kernels/ is mapped into the dataselect namespace, which
setuptools' discovery cannot combine with a list): every subpackage on disk must be in that list, or an
installed (non-editable) wheel would lack it."""
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "dataselect").rglob("__init__.py")}
    on_disk.add("dataselect.kernels")  # kernels/, mapped by package-dir
    assert on_disk == listed
