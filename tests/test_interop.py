"""Byte-exact interoperability with peers that are not ours (issue 4: Python's http.server)."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import threading
from types import ModuleType

EXAMPLES = pathlib.Path(__file__).parent.parent / "examples"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_http_get_from_python_http_server_is_byte_exact(provider, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # SPEC S5.3, S11.1: overlapped sends and receives against an independent HTTP server.
    http = load_example("http_get")
    content = os.urandom(1_000_000)
    (tmp_path / "file.bin").write_bytes(content)
    proc, port = http.start_server(str(tmp_path))
    try:
        head, body = http.http_get(provider, port, "/file.bin")
    finally:
        proc.kill()
        proc.wait()
    assert head.startswith(b"HTTP/1.0 200 OK")
    assert f"Content-Length: {len(content)}".encode() in head
    assert body == content


def test_echo_example_round_trip(provider) -> None:  # type: ignore[no-untyped-def]
    # SPEC S6.5: routines that post from routines (the echo server's state machine).
    echo = load_example("echo_routines")
    ready, stop, address = threading.Event(), threading.Event(), []
    server = threading.Thread(target=echo.echo_server, args=(provider, ready, address, stop))
    server.start()
    assert ready.wait(10)
    messages = [bytes([i]) * (i * 100 + 1) for i in range(30)]
    assert echo.echo_client(provider, address[0], messages) == b"".join(messages)
    stop.set()
    server.join(10)
    assert not server.is_alive()
