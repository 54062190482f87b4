"""Load the documentation's example files and read the Markdown pages."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
MARKDOWN_FILES = (ROOT / "README.md", *sorted(DOCS.rglob("*.md")))
EXAMPLE_FILES = tuple(sorted(EXAMPLES.glob("*.py")))

# The examples are not a package: each is loaded once per session under this
# prefix. Loading one twice would define its job classes twice, and the
# registry refuses two args classes with one job name.
MODULE_PREFIX = "masa_docs_examples"

_FENCE = re.compile(r"^```(?P<lang>[\w+-]*)[^\n]*\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def load_example(stem: str) -> ModuleType:
    """Import ``docs/examples/<stem>.py`` (once) and return the module."""
    name = f"{MODULE_PREFIX}.{stem}"
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{stem}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before executing: wiring imports it by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def fenced_blocks(path: Path) -> list[tuple[str, int, str]]:
    """``(language, line number, code)`` of every fenced block in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    return [
        (match["lang"], text.count("\n", 0, match.start()) + 2, match["body"])
        for match in _FENCE.finditer(text)
    ]
