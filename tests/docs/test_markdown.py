"""Code in README.md and docs/*.md stays true: it is an example file, or it compiles."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from masa_jobs import BackgroundJobOptions, RetryPolicy

from .support import DOCS, EXAMPLE_FILES, EXAMPLES, MARKDOWN_FILES, ROOT, fenced_blocks

DEMO_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/masa-jobs demo"
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
_EXAMPLE_TEXTS = {path.name: path.read_text(encoding="utf-8") for path in EXAMPLE_FILES}
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _blocks(language: str) -> list[tuple[Path, int, str]]:
    return [
        (path, line, code)
        for path in MARKDOWN_FILES
        for lang, line, code in fenced_blocks(path)
        if lang == language
    ]


def _example_containing(code: str) -> str | None:
    """The example file that contains ``code`` verbatim, at some indentation."""
    for name, text in _EXAMPLE_TEXTS.items():
        for indent in range(0, 17, 4):
            if textwrap.indent(code, " " * indent) in text:
                return name
    return None


def _block_id(block: tuple[Path, int, str]) -> str:
    path, line, _ = block
    return f"{path.relative_to(ROOT)}:{line}"


PYTHON_BLOCKS = _blocks("python")


def test_the_docs_have_python_blocks() -> None:
    assert len(PYTHON_BLOCKS) >= 20
    assert all(lang in {"python", "bash", "text", "yaml"} for lang in _languages())


def _languages() -> set[str]:
    return {lang for path in MARKDOWN_FILES for lang, _, _ in fenced_blocks(path)}


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=_block_id)
def test_python_block_is_from_an_example_or_compiles(block: tuple[Path, int, str]) -> None:
    path, line, code = block
    if _example_containing(code) is not None:
        return
    # Not an excerpt of an example: it must at least be valid Python.
    compile(code, f"{path}:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_most_python_blocks_come_from_example_files() -> None:
    from_examples = [b for b in PYTHON_BLOCKS if _example_containing(b[2]) is not None]
    assert len(from_examples) >= len(PYTHON_BLOCKS) - 6, [
        _block_id(b) for b in PYTHON_BLOCKS if _example_containing(b[2]) is None
    ]


def test_readme_quick_start_is_the_quickstart_example() -> None:
    python = [code for lang, _, code in fenced_blocks(ROOT / "README.md") if lang == "python"]
    assert python == [_EXAMPLE_TEXTS["quickstart.py"]]


def test_faq_shows_the_whole_fastapi_example() -> None:
    python = [code for lang, _, code in fenced_blocks(DOCS / "faq.md") if lang == "python"]
    assert _EXAMPLE_TEXTS["fastapi_app.py"] in python


def test_readme_has_the_two_setup_commands_as_their_own_blocks() -> None:
    bash = [code for lang, _, code in fenced_blocks(ROOT / "README.md") if lang == "bash"]
    assert f"{DEMO_COMMAND}\n" in bash
    assert f"{TEST_COMMAND}\n" in bash


@pytest.mark.parametrize("block", _blocks("yaml"), ids=_block_id)
def test_yaml_block_is_the_example_file(block: tuple[Path, int, str]) -> None:
    """The main pages show the tested example file; the store pages their own
    configuration and deployment files, which must at least be valid YAML."""
    page, _, code = block
    if page.parent in (ROOT, DOCS):
        assert code == (EXAMPLES / "masa-jobs.yaml").read_text(encoding="utf-8")
    assert isinstance(yaml.safe_load(code), dict)


def test_every_example_is_linked_from_the_docs() -> None:
    linked = {
        (path.parent / match["target"]).resolve()
        for path in MARKDOWN_FILES
        for match in _LINK.finditer(path.read_text(encoding="utf-8"))
    }
    for example in (*EXAMPLE_FILES, EXAMPLES / "masa-jobs.yaml"):
        assert example.resolve() in linked, f"no page links to {example.name}"


@pytest.mark.parametrize("page", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_anchors(page: Path) -> None:
    for match in _LINK.finditer(page.read_text(encoding="utf-8")):
        target = match["target"]
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        assert destination.exists(), f"{page.name}: broken link {target}"
        if anchor:
            assert anchor in _anchors(destination), f"{page.name}: no anchor {target}"


def _anchors(page: Path) -> set[str]:
    """GitHub-style anchors of the Markdown headings of ``page``."""
    anchors = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_options_table_matches_the_defaults() -> None:
    rows = re.findall(
        r"^\| `(\w+)` \| `([^`]+)` \|", (DOCS / "concepts.md").read_text(encoding="utf-8"), re.M
    )
    documented = {name: ast.literal_eval(value) for name, value in rows}
    fields = BackgroundJobOptions.model_fields
    assert set(documented) == set(fields)
    for name, value in documented.items():
        assert value == fields[name].default, name


def test_retry_table_matches_the_retry_policy() -> None:
    rows = re.findall(r"^\| (\d+) \| (\d+) s \|", (DOCS / "concepts.md").read_text(), re.M)
    policy = RetryPolicy()  # MASA's defaults
    assert [int(attempt) for attempt, _ in rows] == list(range(1, policy.max_retry_times + 1))
    for attempt, seconds in rows:
        delay = policy.delay_after(int(attempt))
        assert delay is not None
        assert delay.total_seconds() == int(seconds)
    assert policy.delay_after(policy.max_retry_times + 1) is None


def test_docs_name_no_local_paths() -> None:
    for page in MARKDOWN_FILES:
        text = page.read_text(encoding="utf-8")
        assert "/work/" not in text
        assert "/tmp/" not in text
