"""The asyncio face in a dozen lines: an overlapped echo server and client (the README tour)."""

import asyncio

from wsp_async import WSAESHUTDOWN, WSAError, aio


async def main():
    async def echo(sock):  # one task per connection, like asyncio.start_server
        while data := await sock.recv(4096):
            await sock.send(data)

    async with await aio.start_server(echo) as server:
        async with await aio.connect(*server.address) as sock:
            await sock.send([b"header:", b"body"])  # scatter/gather, one send
            print(await sock.recv(100))  # b'header:body'
            await sock.shutdown()  # posted sends go out first, then FIN
            try:
                await sock.send(b"late")
            except WSAError as e:
                assert e.winerror == WSAESHUTDOWN


asyncio.run(main())
