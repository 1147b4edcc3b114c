"""A TCP (and TLS) connection to the upstream: the layer below every HTTP failure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from urllib.parse import urlsplit

from claude_code_proxy.doctor.context import Context
from claude_code_proxy.launcher import is_loopback_host


def os_reason(exc: OSError) -> str:
    """`Connection refused` rather than asyncio's `Connect call failed (…)`."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


def unreachable_fix(host: str, port: int) -> str:
    if is_loopback_host(host):
        return (
            f"start the server that should listen on port {port} (Ollama: "
            "`ollama serve`; LM Studio: start its local server; vLLM: `vllm serve <model>`) "
            "or fix the port in OPENAI_BASE_URL; inside Docker, the host machine is "
            "host.docker.internal, not localhost"
        )
    return "check OPENAI_BASE_URL, your network, and any firewall, proxy or VPN"


class ReachabilityCheck:
    """Connects once; says whether the host resolves, answers, and speaks TLS when it should."""

    async def run(self, ctx: Context) -> bool:
        base = ctx.settings.openai_base_url
        host, port = ctx.host, ctx.port
        connect_timeout = ctx.settings.connect_timeout
        tls = urlsplit(base).scheme == "https"
        where = f"{host}:{port}"
        started = time.perf_counter()
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    host, port, ssl=ssl.create_default_context() if tls else None
                ),
                connect_timeout,
            )
        except (asyncio.TimeoutError, TimeoutError):
            ctx.add(
                "reachability",
                "FAIL",
                f"no connection to {where} within {connect_timeout:g}s",
                unreachable_fix(host, port),
            )
            return False
        except socket.gaierror as exc:
            ctx.add(
                "reachability",
                "FAIL",
                f"cannot resolve {host}: {exc.strerror or exc}",
                f"check the host name in OPENAI_BASE_URL ({base}) and the network's DNS",
            )
            return False
        except ssl.SSLError as exc:
            ctx.add(
                "reachability",
                "FAIL",
                f"TLS handshake with {where} failed: {exc.reason or exc}",
                "check that the URL should be https (local servers usually speak http) and "
                "that the system trusts the server's certificate",
            )
            return False
        except OSError as exc:
            ctx.add(
                "reachability",
                "FAIL",
                f"cannot connect to {where}: {os_reason(exc)}",
                unreachable_fix(host, port),
            )
            return False
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 2)
        elapsed = (time.perf_counter() - started) * 1000
        ctx.add(
            "reachability",
            "PASS",
            f"connected to {where}{' (TLS)' if tls else ''} in {elapsed:.0f} ms",
        )
        return True
