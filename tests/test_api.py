"""The curated Python API: everything the documentation's examples use imports from `ziggurat`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


def test_the_documentation_python_examples_import_from_ziggurat():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    lines = re.findall(r"^from ziggurat import (.+)$", text, re.M)
    assert lines, "the documentation shows no `from ziggurat import ...`"
    for line in lines:
        for name in (n.strip() for n in line.split(",")):
            assert name in ziggurat.__all__, f"the documentation imports {name} from ziggurat"


def test_every_link_between_documentation_pages_lands():
    """README.md and docs/*.md: relative links name files that exist and anchors that are headings."""
    def anchors(page: Path) -> set[str]:
        heads = re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), re.M)
        return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}

    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            landing = (page.parent / path).resolve() if path else page
            assert landing.exists(), f"{page.name}: link to {target}: no such file"
            if anchor and landing.suffix == ".md":
                assert anchor in anchors(landing), f"{page.name}: link to {target}: no such heading"


def test_importing_the_core_does_not_load_the_engine():
    code = ("import sys, ziggurat.core.grid; "
            "print(any(m.startswith(('ziggurat.engine', 'ziggurat.audit')) for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_command_line_in_the_documentation_names_real_commands_and_options():
    """`ziggurat CMD --option ...` in README.md and docs/*.md (code spans and blocks): CMD is a
    command and each --option one of its options, so the pages cannot drift from the CLI."""
    import click

    from ziggurat.cli.app import main

    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    commands: dict[str, click.Command] = main.commands  # type: ignore[attr-defined]
    seen = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)
        spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```.*?^```", "", text, flags=re.M | re.S))
        spans += [line for block in blocks for line in block.splitlines()]
        for span in spans:
            match = re.match(r"(?:\$ )?(?:\S*/)?ziggurat ([a-z][a-z-]*)\b(.*)", span.strip())
            if match is None:
                continue
            name, rest = match.groups()
            assert name in commands, f"{page.name}: `{span}`: no command {name!r}"
            options = {opt for param in commands[name].params for opt in (*param.opts, *param.secondary_opts)}
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
                assert flag in options, f"{page.name}: `{span}`: {name} has no option {flag}"
            seen += 1
    assert seen > 40, seen   # (the pages show 60-odd command lines)
