"""The curated Python API: everything the README's examples use imports from `ziggurat`."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

import ziggurat

from conftest import REPO


def test_every_public_name_resolves():
    for name in ziggurat.__all__:
        assert getattr(ziggurat, name) is not None, name
    from ziggurat.audit.checks import verify
    from ziggurat.engine.run import execute

    assert ziggurat.execute is execute and ziggurat.verify is verify
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        ziggurat.nothing_here  # noqa: B018


def test_the_error_classes_inherit_the_matching_builtins():
    assert issubclass(ziggurat.RecipeError, ValueError) and issubclass(ziggurat.InputError, OSError)
    assert issubclass(ziggurat.OutputError, OSError) and issubclass(ziggurat.ProcessError, RuntimeError)
    assert issubclass(ziggurat.StorageError, ziggurat.OutputError)
    errors = [getattr(ziggurat, n) for n in ziggurat.__all__ if n.endswith("Error")]
    assert all(issubclass(e, ziggurat.ZigguratError) for e in errors)
    assert not issubclass(ziggurat.Empty, ziggurat.ZigguratError)   # "nothing here" is not an error


def test_the_readme_python_examples_import_from_ziggurat():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    lines = re.findall(r"^from ziggurat import (.+)$", text, re.M)
    assert lines, "the README shows no `from ziggurat import ...`"
    for line in lines:
        for name in (n.strip() for n in line.split(",")):
            assert name in ziggurat.__all__, f"README imports {name} from ziggurat"


def test_importing_the_core_does_not_load_the_engine():
    code = ("import sys, ziggurat.core.grid; "
            "print(any(m.startswith(('ziggurat.engine', 'ziggurat.audit')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
