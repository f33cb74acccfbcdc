"""The bodies of the SPI entry points, over the parts they share (``parts``).

``entry`` is the S2 return protocol written once; ``posting`` the overlapped contract
every post meets; ``lifecycle``, ``sends``, ``receives``, ``control`` and ``extensions``
the bodies of the ``WSP*`` methods and of the ``mswsock.h`` extension functions.
"""
