"""A TCP proxy that makes a server look `delay` seconds away (answers arrive late).

    python -m bench.delayproxy LISTEN_PORT TARGET_PORT [DELAY_S]

Each chunk from the server is forwarded `delay` seconds after it arrived, in
order, without slowing the next ones down: latency, not bandwidth.
"""

from __future__ import annotations

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            if delay:
                loop.call_later(delay, writer.write, data)
            else:
                writer.write(data)
        if delay:
            await asyncio.sleep(delay)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listen: int, target: int, delay: float) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer, 0.0), _pipe(up_reader, writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]),
                      float(sys.argv[3]) if len(sys.argv) > 3 else 0.05))
