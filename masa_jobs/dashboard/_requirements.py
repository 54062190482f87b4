"""The dashboard's extra, checked before anything of it is imported."""

from __future__ import annotations

from importlib.util import find_spec

# Form parsing (every action is a POST) needs python-multipart, which
# Starlette imports only when a form arrives: check it here, with the rest.
_MISSING = [
    name
    for name, modules in (
        ("Starlette", ("starlette",)),
        ("Jinja2", ("jinja2",)),
        ("python-multipart", ("python_multipart", "multipart")),
    )
    if not any(find_spec(module) for module in modules)
]
if _MISSING:  # pragma: no cover - depends on what is installed
    raise ImportError(
        f"the masa-jobs dashboard needs {', '.join(_MISSING)}: pip install 'masa-jobs[dashboard]'"
    )
