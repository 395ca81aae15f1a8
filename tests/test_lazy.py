"""Lazy package exports: a name imports its module on first use, once; unknown names are AttributeError."""
from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package", ["facegan.editing", "facegan.recognition", "facegan.robustness", "facegan.repair", "facegan.metrics"])
def test_importing_a_package_loads_no_torch_and_its_names_resolve(package):
    probe = (f"import sys, {package} as p; assert 'torch' not in sys.modules, 'torch loaded on import'; "
             "names = sorted(p._EXPORTS); assert set(names) <= set(dir(p)); "
             "value = getattr(p, names[0]); assert p.__dict__[names[0]] is value; "
             "print('ok')")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_an_unknown_name_is_an_attribute_error_naming_the_package():
    import facegan.robustness

    with pytest.raises(AttributeError, match="'facegan.robustness' has no attribute 'nothing'"):
        facegan.robustness.nothing  # noqa: B018
    assert not hasattr(facegan.robustness, "nothing")
