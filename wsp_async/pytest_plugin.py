"""A pytest plugin: ``pytest --asyncio-proactor`` runs async tests on Windows' Proactor loop.

With the option, every event loop the run makes is
:class:`wsp_async.proactor.ProactorEventLoop` -- CPython's own
``asyncio.windows_events.ProactorEventLoop`` running over wsp_async on Linux (SPEC
S17), as on Windows, where the Proactor is the default loop:

* the event loop policy is Windows' ``WindowsProactorEventLoopPolicy`` for the whole
  run, so loops made through the policy -- ``asyncio.run``, ``asyncio.Runner``,
  unittest's ``IsolatedAsyncioTestCase``, anyio's and aiohttp's pytest plugins -- are
  the Proactor (the previous policy comes back when the run ends);
* pytest-asyncio's loops, when that plugin is present, through its
  ``pytest_asyncio_loop_factories`` hook.

Without the option the plugin does nothing, so installing wsp_async changes no one's
test run.  The plugin is registered through the ``pytest11`` entry point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import pytest

__all__ = ["pytest_addoption", "pytest_configure", "pytest_unconfigure"]

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


_PREVIOUS_POLICY = pytest.StashKey[asyncio.AbstractEventLoopPolicy]()


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption(OPTION, default=False):
        return
    from . import proactor

    config.stash[_PREVIOUS_POLICY] = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(proactor.ProactorEventLoopPolicy())
    if config.pluginmanager.hasplugin("asyncio"):
        config.pluginmanager.register(_ProactorLoops(), "wsp_async-proactor-loops")


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(_PREVIOUS_POLICY, None)
    if previous is not None:
        asyncio.set_event_loop_policy(previous)
