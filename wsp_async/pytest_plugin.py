"""A pytest plugin: ``pytest --asyncio-proactor`` runs async tests on Windows' Proactor loop.

With the option, pytest-asyncio creates each test's event loop with
:class:`wsp_async.proactor.ProactorEventLoop` -- CPython's own
``asyncio.windows_events.ProactorEventLoop`` running over wsp_async on Linux (SPEC
S17) -- through pytest-asyncio's ``pytest_asyncio_loop_factories`` hook.  Without the
option the plugin does nothing, so installing wsp_async changes no one's test run.
The plugin is registered through the ``pytest11`` entry point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_configure"]

OPTION = "--asyncio-proactor"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("asyncio").addoption(
        OPTION,
        action="store_true",
        default=False,
        help="run async tests on CPython's ProactorEventLoop over wsp_async (Windows' loop on Linux)",
    )


class _ProactorLoops:
    """Registered only with the option: the one loop factory every async test gets."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_asyncio_loop_factories(
        self, config: pytest.Config, item: pytest.Item
    ) -> Mapping[str, Callable[[], Any]]:
        from . import proactor

        return {"proactor": proactor.new_event_loop}


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption(OPTION, default=False):
        if not config.pluginmanager.hasplugin("asyncio"):
            raise pytest.UsageError(f"{OPTION} needs pytest-asyncio (1.3 or newer)")
        config.pluginmanager.register(_ProactorLoops(), "wsp_async-proactor-loops")
