"""Opt-in debug capture (`CAPTURE_DIR`): the four phases of each request, redacted.

For "why did my request break?" reports: the client's request, the translated upstream
request, the upstream's raw response and the translated response, one folder per
request. Keys are redacted, each phase is capped, and old captures are pruned.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from claude_code_proxy.config import ConfigError

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"}
)
_KEY_PATTERN = re.compile(rb"\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{8,}")


class Capture:
    def __init__(
        self,
        directory: str,
        *,
        secrets: Iterable[str] = (),
        max_phase_bytes: int = 4 * 1024 * 1024,
        max_requests: int = 200,
    ) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:  # settings checked it; the file system may still say no
            raise ConfigError(
                f"CAPTURE_DIR={directory!r} cannot be created: {exc.strerror or exc}"
            ) from None
        self.secrets = [s.encode() for s in secrets if s]
        self.max_phase_bytes = max_phase_bytes
        self.max_requests = max_requests

    def session(self, request_id: str, extra_secrets: Iterable[str] = ()) -> CaptureSession:
        secrets = self.secrets + [s.encode() for s in extra_secrets if s]
        return CaptureSession(self, request_id, secrets)

    def redact(self, data: bytes, secrets: list[bytes]) -> bytes:
        for secret in secrets:
            data = data.replace(secret, REDACTED.encode())
        return _KEY_PATTERN.sub(REDACTED.encode(), data)

    def prune(self) -> None:
        folders = sorted(
            (p for p in self.directory.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
        for old in folders[: max(0, len(folders) - self.max_requests)]:
            shutil.rmtree(old, ignore_errors=True)


class CaptureSession:
    """Collects one request's phases in memory (capped) and writes them at the end."""

    PHASES = ("1-client-request", "2-upstream-request", "3-upstream-response", "4-client-response")

    def __init__(self, capture: Capture, request_id: str, secrets: list[bytes]) -> None:
        self.capture = capture
        self.request_id = request_id
        self.secrets = secrets
        self.parts: dict[str, list[bytes]] = {phase: [] for phase in self.PHASES}
        self.sizes: dict[str, int] = dict.fromkeys(self.PHASES, 0)

    def add(self, phase: str, data: bytes) -> None:
        room = self.capture.max_phase_bytes - self.sizes[phase]
        if room <= 0:
            return
        piece = data[:room]
        self.parts[phase].append(piece)
        self.sizes[phase] += len(piece)
        if len(piece) < len(data):
            self.parts[phase].append(b"\n[capture truncated]\n")
            self.sizes[phase] = self.capture.max_phase_bytes

    def add_json(self, phase: str, value: Any, headers: Mapping[str, str] | None = None) -> None:
        document: dict[str, Any] = {"body": value}
        if headers is not None:
            document["headers"] = {
                k: (REDACTED if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()
            }
        try:
            self.add(phase, orjson.dumps(document, option=orjson.OPT_INDENT_2))
        except TypeError:
            self.add(phase, repr(document).encode())

    async def write(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write)

    def _write(self) -> None:
        folder = self.capture.directory / self.request_id
        try:
            # Captures hold whole conversations: owner-only (0700 folder, 0600 files).
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for phase, parts in self.parts.items():
                if parts:
                    data = self.capture.redact(b"".join(parts), self.secrets)
                    suffix = ".json" if phase in self.PHASES[:2] else ".txt"
                    _write_private(folder / f"{phase}{suffix}", data)
            self.capture.prune()
        except OSError as exc:
            logger.warning("could not write capture %s: %s", folder, exc)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        os.fchmod(file.fileno(), 0o600)  # an older capture file may have had other modes
        file.write(data)
