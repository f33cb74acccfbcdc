"""How an operation ends and who hears it: the one completion door (``door``), the
provider's I/O loop (``ioloop``) and the watch on threads that exit (``threadwatch``).

Ports (``wsp_async.iocp``) and kernel32's waits (``wsp_async.kernel32``) sit in this
layer too, as public modules.
"""
