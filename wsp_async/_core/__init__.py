"""The sans-I/O engine (``docs/architecture.md``): one socket's state, its send and
receive queues, the per-operation record, the argument rules and the handle table.

Nothing here touches a socket, a loop or a thread's scheduling: posts go in, decisions
come out, and the layers above carry them out.  ``tests/test_layers.py`` keeps it so.
"""
