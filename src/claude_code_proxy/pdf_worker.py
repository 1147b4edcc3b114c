"""PDF text extraction off the event loop, in worker processes the proxy can kill.

A 16 KB PDF can keep pypdf busy for tens of seconds, and a thread cannot be interrupted; so
each extraction runs in a small pool of spawned processes (memory-capped), page by page, and
is given PDF_TIMEOUT in all. Past the deadline the worker is killed (a fresh one is spawned
for the next document) and the model gets the pages extracted so far, clearly marked.
Pages beyond MAX_PDF_PAGES and text beyond MAX_PDF_TEXT_CHARS are cut the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections.abc import Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from claude_code_proxy.translate.pdf import join_pdf_text

logger = logging.getLogger(__name__)

#: Address space of one worker: a decompression bomb fails there, not in the proxy.
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024


@dataclass(frozen=True)
class PdfLimits:
    max_pages: int = 100
    max_chars: int = 1_000_000
    timeout: float = 10.0
    workers: int = 2


class PdfExtractor:
    """At most `limits.workers` extractions at once; each bounded by `limits.timeout`."""

    def __init__(self, limits: PdfLimits) -> None:
        self.limits = limits
        self._idle: list[_Worker] = []
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def extract_all(self, sources: Iterable[str]) -> dict[str, str]:
        """Text of each distinct base64 PDF, keyed by its data (see `documents.pdf_sources`)."""
        texts: dict[str, str] = {}
        for data in sources:
            if data not in texts:
                texts[data] = await self.extract(data)
        return texts

    async def extract(self, data: str) -> str:
        limits = self.limits
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + limits.timeout
        if self._slots is None:
            self._slots = asyncio.Semaphore(limits.workers)
        try:
            await asyncio.wait_for(self._slots.acquire(), limits.timeout)
        except asyncio.TimeoutError:
            return (
                "[PDF text not extracted: the proxy was busy extracting other documents "
                f"for {limits.timeout:g}s (PDF_TIMEOUT, PDF_WORKERS)]"
            )
        worker: _Worker | None = None
        try:
            worker = self._idle.pop() if self._idle else None
            if worker is None or not worker.alive():
                worker = await loop.run_in_executor(None, _Worker.spawn)
            job = (data, limits.max_pages, limits.max_chars)
            pages, notes, reusable = await loop.run_in_executor(None, worker.run, job, deadline)
        except asyncio.CancelledError:
            if worker is not None:
                worker.kill()  # the client left: stop the work, do not leave it running
            raise
        except OSError as exc:
            logger.warning("PDF worker failed: %s", exc)
            if worker is not None:
                worker.kill()
            return f"[PDF text not extracted: the extraction worker failed ({exc})]"
        finally:
            self._slots.release()
        assert worker is not None
        if reusable and not self._closed:
            self._idle.append(worker)
        else:
            worker.kill()
            if not reusable:
                notes.append(
                    f"[PDF text truncated: extraction stopped after {limits.timeout:g}s with "
                    f"{len(pages)} page(s) extracted (PDF_TIMEOUT)]"
                )
        return join_pdf_text(pages, notes)

    def close(self) -> None:
        self._closed = True
        for worker in self._idle:
            worker.kill()
        self._idle.clear()


class _Worker:
    """One spawned process and its pipe; `run` blocks (call it in a thread)."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn

    @classmethod
    def spawn(cls) -> _Worker:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(
            target=serve, args=(child, WORKER_MEMORY_BYTES), name="ccp-pdf", daemon=True
        )
        process.start()
        child.close()
        return cls(process, parent)

    def alive(self) -> bool:
        return bool(self.process.is_alive())

    def run(self, job: tuple[str, int, int], deadline: float) -> tuple[list[str], list[str], bool]:
        """(pages, notes, finished in time); pages arrive one by one so a timeout keeps them."""
        pages: list[str] = []
        notes: list[str] = []
        try:
            self.conn.send(job)
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self.conn.poll(left):
                    return pages, notes, False
                kind, text = self.conn.recv()
                if kind == "done":
                    return pages, notes, True
                (pages if kind == "page" else notes).append(text)
        except (EOFError, OSError):
            notes.append("[PDF text truncated: the extraction worker ended (memory limit?)]")
            return pages, notes, False

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.join(1.0)
        with contextlib.suppress(Exception):
            self.conn.close()


def serve(conn: Connection, memory_bytes: int) -> None:
    """The worker process: extract each job's pages and send them one by one."""
    with contextlib.suppress(Exception):
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    from claude_code_proxy.translate.pdf import pdf_page_texts

    while True:
        try:
            data, max_pages, max_chars = conn.recv()
        except (EOFError, OSError):
            return
        try:
            for event in pdf_page_texts(data, max_pages=max_pages, max_chars=max_chars):
                conn.send(event)
        except MemoryError:
            conn.send(("note", "[PDF text truncated: the document needs too much memory]"))
        conn.send(("done", ""))
