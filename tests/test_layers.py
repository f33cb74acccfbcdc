"""The package's layering, checked from its source (``docs/architecture.md``).

Three rules, read from every ``import`` a module makes anywhere in its text (at the top,
under ``TYPE_CHECKING``, or inside a function: a late import still ties two modules):

* each module belongs to one layer, and imports only from its own layer or below;
* no import cycle, not even inside one layer;
* no module reaches another module's private names (``from ._x import _name``, or
  ``module._name`` on a module of the package).

A new module must be given its layer here; the test fails until it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wsp_async"

#: Bottom to top.  Module names without the ``wsp_async.`` prefix; ``_core.*`` is every
#: module of that folder: each private folder is one layer, which the tree shows.
LAYERS: dict[str, tuple[str, ...]] = {
    # Winsock's vocabulary: values, structures, codes, events, APC targets.
    "vocabulary": (
        "constants",
        "errors",
        "ntstatus",
        "apc",
        "structs",
        "events",
        "mswsock",
        "faults",
    ),
    # The sans-I/O engine: one socket's state, its queues, its decisions, the argument
    # rules and the handle table; and the hooks that watch it.  No I/O.
    "engine": ("_core.*", "trace", "verifier"),
    # The one completion door, the loop that runs the I/O, ports and kernel32's waits.
    "completion": ("_completion.*", "iocp", "kernel32"),
    # The thin adapter between the engine and an asyncio transport.
    "adapter": ("_io.*",),
    # The bodies of the SPI entry points, over the parts they share.
    "entry points": ("_spi.*",),
    # What programs import.
    "faces": ("provider", "aioports", "aio.*", "overlapped.*", "proactor", "pytest_plugin", ""),
    # Programs of our own over the faces.
    "tools": ("tools.*", "__main__"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _rank_of(module: str) -> int | None:
    for rank, layer in enumerate(LAYERS.values()):
        for entry in layer:
            if entry == module or (
                entry.endswith(".*") and (module == entry[:-2] or module.startswith(entry[:-1]))
            ):
                return rank
    return None


RANK = {module: rank for module in MODULES if (rank := _rank_of(module)) is not None}


def _package_of(name: str, path: Path) -> list[str]:
    """The package a relative import in module ``name`` starts from, as parts."""
    parts = name.split(".") if name else []
    return parts if path.name == "__init__.py" else parts[:-1]


def _imports(name: str, path: Path) -> list[tuple[str, str | None, int]]:
    """``(module imported, private name taken from it or None, line)`` for every import."""
    found: list[tuple[str, str | None, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(name, path)
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "wsp_async":
                source = node.module.removeprefix("wsp_async").lstrip(".")
            else:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}".lstrip(".")
                if submodule in MODULES:
                    found.append((submodule, None, node.lineno))
                elif source in MODULES:
                    private = alias.name if alias.name.startswith("_") else None
                    found.append((source, private, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "wsp_async":
                    module = alias.name.removeprefix("wsp_async").lstrip(".")
                    if module in MODULES:
                        found.append((module, None, node.lineno))
    return [item for item in found if item[0] != name]


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    assert sorted(set(MODULES) - set(RANK)) == [], "give each new module its layer in LAYERS"
    named = {entry for layer in LAYERS.values() for entry in layer if not entry.endswith("*")}
    assert sorted(named - set(MODULES)) == [], "LAYERS names a module that is gone"


def test_imports_go_down_or_stay_in_their_layer() -> None:
    upward = [
        f"{path.name}:{line} imports {target or 'wsp_async'} (a layer above)"
        for name, path in MODULES.items()
        for target, _private, line in GRAPH[name]
        if RANK.get(target, -1) > RANK.get(name, len(LAYERS))
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    edges = {name: {target for target, _p, _l in GRAPH[name]} for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(MODULES):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_no_module_reaches_another_modules_private_names() -> None:
    reaches = [
        f"{path.name}:{line} takes {private} from {target}"
        for name, path in MODULES.items()
        for target, private, line in GRAPH[name]
        if private is not None
    ]
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        # Names bound to one of the package's modules in this module: ``from . import x``
        # or ``import wsp_async.x as x``.
        bound = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = _package_of(name, path)
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    if f"{source}.{alias.name}".lstrip(".") in MODULES:
                        bound[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                reaches.append(f"{path.name}:{node.lineno} {node.value.id}.{node.attr}")
    assert reaches == []


#: What the engine may use of the ``socket`` module: address arithmetic, never a socket.
PURE_SOCKET_NAMES = {"AF_INET", "AF_INET6", "inet_pton", "inet_ntop"}


def test_the_engine_does_no_io() -> None:
    # docs/architecture.md: the engine decides and never does I/O.  One of its modules
    # importing asyncio, selectors, ssl or os, or using ``socket`` for more than address
    # arithmetic, would be I/O where only decisions belong (a lock is not I/O: operations
    # are completed from any thread).
    io_modules = {"asyncio", "selectors", "ssl", "os"}
    offenders = []
    engine = sorted(m for m, rank in RANK.items() if rank == list(LAYERS).index("engine"))
    assert "_core.engine" in engine
    for name in engine:
        tree = ast.parse(MODULES[name].read_text())
        socket_names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                offenders += [f"{name}: {a.name}" for a in node.names if a.name in io_modules]
                socket_names |= {a.asname or a.name for a in node.names if a.name == "socket"}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                if node.module.split(".")[0] in io_modules | {"socket"}:
                    offenders.append(f"{name}: from {node.module}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in socket_names
                and node.attr not in PURE_SOCKET_NAMES
            ):
                offenders.append(f"{name}:{node.lineno} socket.{node.attr}")
    assert offenders == []


def test_modules_stay_small_and_the_top_level_shows_the_public_face() -> None:
    # Issue 24: no module over 450 lines; at most 20 modules at the top level, so the
    # private folders (one per layer) carry the rest.
    long = {
        name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 450
    }
    assert long == {}
    top = [p for p in PACKAGE.glob("*.py")]
    assert len(top) <= 20, sorted(p.name for p in top)
