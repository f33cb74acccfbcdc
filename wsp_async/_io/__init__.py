"""The thin adapter: carries the engine's decisions out on an asyncio transport.

``adapter`` is one emulated socket over its transport; ``handoff`` brings posts from
other threads to the loop in arrival order; ``foreign`` and ``face`` are the sends (and
receives) that complete inside the call; ``datagrams``, ``protocols`` and ``transmit``
are the datagram path, the asyncio protocols and TransmitFile's file reader;
``adoption`` remembers the program's socket objects the provider adopted.
"""
