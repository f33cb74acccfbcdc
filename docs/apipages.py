"""Writes the API reference pages (``docs/api/*.rst``) from the modules' ``__all__``.

Every public name gets its own autodoc entry, under the name a program imports it by
(``wsp_async.WSPSend``'s provider, ``wsp_async.WSAEFAULT``), grouped by what it is.  The
pages are made at each build, so a name added to ``__all__`` is in the reference the next
time ``make docs`` runs, and :func:`write_pages` fails the build when a name would be
left out.
"""

from __future__ import annotations

import enum
import importlib
import inspect
from pathlib import Path
from typing import Any

#: The public modules, their page's title, and what the page says first.
PAGES = {
    "wsp_async": (
        "``wsp_async``: the SPI face",
        "Everything a program ported from Winsock needs: the ``Provider`` and its ``WSP*``\n"
        "entry points, structures and boxes, events and waits, completion ports, the\n"
        "extension functions, cancellation, the Win32 view of errors, fault injection and\n"
        "tracing (contract rules S1-S16, :doc:`../contract`).",
    ),
    "wsp_async.aio": (
        "``wsp_async.aio``: the asyncio face",
        "Awaitable sockets over the same engine (contract rule S0, :doc:`../contract`).",
    ),
    "wsp_async.proactor": (
        "``wsp_async.proactor``: CPython's Proactor on Linux",
        "The interpreter's own ``asyncio/windows_events.py`` loaded over the ``_overlapped``\n"
        "face (rules S17.2 and S17.3; :doc:`../proactor`).",
    ),
    "wsp_async.overlapped": (
        "``wsp_async.overlapped``: the ``_overlapped`` face",
        "CPython's ``_overlapped`` module over a provider of its own (rule S17.1).",
    ),
}

#: Where a class or function is defined -> the heading it is listed under.
SECTIONS = {
    "wsp_async.provider": "The provider",
    "wsp_async.structs": "Structures and boxes",
    "wsp_async.events": "Events, waits and APCs",
    "wsp_async.apc": "Events, waits and APCs",
    "wsp_async.iocp": "Completion ports",
    "wsp_async._completion.port": "Completion ports",
    "wsp_async.kernel32": "Win32 events, cancellation and overlapped results",
    "wsp_async.mswsock": "Extension functions",
    "wsp_async.errors": "Errors",
    "wsp_async.ntstatus": "Status codes",
}


def _section(module: str, name: str, obj: Any) -> str:
    if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
        source = getattr(obj, "__module__", "") or ""
        if module != "wsp_async":
            return "Classes and functions"
        return SECTIONS.get(source, "Other classes and functions")
    if isinstance(obj, enum.Enum):
        return f"Codes: {type(obj).__name__} members"
    if module == "wsp_async" and name.startswith("WSAID_"):
        return "Extension function GUIDs"
    if module == "wsp_async" and (name.startswith("WSA_") or name.startswith("WSAE")):
        return "Constants: Winsock error codes"
    return "Constants"


#: The order of a page's sections (others after these, in the order they came).
ORDER = [
    "The provider",
    "Structures and boxes",
    "Events, waits and APCs",
    "Completion ports",
    "Win32 events, cancellation and overlapped results",
    "Extension functions",
    "Extension function GUIDs",
    "Errors",
    "Status codes",
]


def _order(heading: str) -> int:
    return ORDER.index(heading) if heading in ORDER else len(ORDER)


def _entry(module_name: str, name: str, obj: Any, docs: dict[str, list[str]]) -> str:
    """One autodoc entry; a constant is written out with its value and the ``#:`` comment
    of the module that defines it (autodoc would show the docstring of its type)."""
    if inspect.isclass(obj):
        if obj.__module__ == "wsp_async.provider":
            # Its fault injection, adoption and face calls live in a base class.
            return f".. autoclass:: {module_name}.{name}\n   :inherited-members:\n"
        return f".. autoclass:: {module_name}.{name}\n"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f".. autofunction:: {module_name}.{name}\n"
    if isinstance(obj, enum.Enum):
        value = f"{type(obj).__name__}.{obj.name} = {_number(obj.value)}"
    elif isinstance(obj, bool):
        value = repr(obj)
    elif isinstance(obj, int):
        value = _number(obj)
    elif isinstance(obj, str | bytes | float | type(None)):
        value = repr(obj)
    else:
        value = f"a {type(obj).__name__}"
    text = docs.get(name) or []
    body = "".join(f"   {line}\n" if line else "\n" for line in text)
    return f".. py:data:: {name}\n   :value: {value}\n\n{body}"


def _number(value: int) -> str:
    """As Windows' headers write it: Winsock and Win32 codes in decimal, flags, NTSTATUS
    values and ioctl codes in hexadecimal."""
    return f"{value:#x}" if value > 0xFFFF or value < 0 else str(value)


def _attribute_docs() -> dict[str, list[str]]:
    """The ``#:`` comments of the package's modules, by the name they document."""
    from sphinx.pycode import ModuleAnalyzer

    found: dict[str, list[str]] = {}
    for source in ("constants", "errors", "ntstatus", "mswsock", "overlapped", "proactor"):
        analyzer = ModuleAnalyzer.for_module(f"wsp_async.{source}")
        for (scope, name), lines in analyzer.find_attr_docs().items():
            if not scope:
                found.setdefault(name, list(lines))
    return found


def page_text(module_name: str) -> str:
    module = importlib.import_module(module_name)
    title, intro = PAGES[module_name]
    docs = _attribute_docs()
    sections: dict[str, list[str]] = {}
    for name in module.__all__:
        obj = getattr(module, name)
        sections.setdefault(_section(module_name, name, obj), []).append(
            _entry(module_name, name, obj, docs)
        )
    lines = [title, "=" * len(title), "", intro, "", f".. module:: {module_name}", ""]
    for heading, entries in sorted(sections.items(), key=lambda item: _order(item[0])):
        lines += [heading, "-" * len(heading), "", *entries, ""]
    return "\n".join(lines)


def write_pages(out: Path) -> None:
    out.mkdir(exist_ok=True)
    for module_name in PAGES:
        text = page_text(module_name)
        module = importlib.import_module(module_name)
        listed = set()
        for line in text.splitlines():
            if line.startswith(".. auto") or line.startswith(".. py:data::"):
                listed.add(line.split(":: ", 1)[1].removeprefix(f"{module_name}."))
        missing = set(module.__all__) - listed
        if missing:
            raise RuntimeError(f"{module_name}: not in the reference: {sorted(missing)}")
        stem = module_name.rpartition(".")[2]
        page = out / f"{stem}.rst"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)
