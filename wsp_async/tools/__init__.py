"""Tools built on the library, outside its core: the benchmark harness, the demo,
and the trace timeline (``python -m wsp_async bench|demo|timeline``)."""
