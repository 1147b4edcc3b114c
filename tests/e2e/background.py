"""Local servers for the e2e helpers, each on 127.0.0.1 with its own loop in a daemon thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import TypeVar

from aiohttp import web

AppT = TypeVar("AppT", bound="BackgroundApp")


class BackgroundApp:
    """Base class: subclasses implement :meth:`build_app`; use as a context manager.

    The server listens on ``host`` at a random free port (``port`` after start) and runs its
    own event loop in a daemon thread, so synchronous tests can drive subprocesses meanwhile.
    """

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        """The application to serve."""
        raise NotImplementedError

    async def on_cleanup(self) -> None:
        """Hook run on the server's loop before it stops."""

    async def start(self) -> None:
        """Serve on the running event loop."""
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving."""
        await self.on_cleanup()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def __enter__(self: AppT) -> AppT:
        """Start serving from a private event loop in a daemon thread."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=type(self).__name__, daemon=True)
        self._thread.start()
        started.wait(30)
        if failure:
            raise RuntimeError(f"{type(self).__name__} failed to start") from failure[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the background thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._loop = self._thread = None


class ConnectSink(BackgroundApp):
    """A local HTTP(S) proxy that forwards nothing: it records and refuses every request.

    Point ``HTTPS_PROXY``/``HTTP_PROXY`` at it (with ``NO_PROXY=127.0.0.1``) to let a client
    try its nonessential traffic while everything that would leave the machine ends here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[str] = []
        """First request line of each attempt, e.g. ``CONNECT api.anthropic.com:443 HTTP/1.1``."""
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """The proxy URL to put in ``HTTPS_PROXY``."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen on 127.0.0.1 at a random port."""
        self._server = await asyncio.start_server(self._handle, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            self.attempts.append(line.decode("latin-1").strip())
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()
