"""Reading a whole upstream body with a size cap (MAX_UPSTREAM_RESPONSE_BYTES).

`aiohttp.ClientResponse.read()` has no limit: a misbehaving upstream (or one answering
through a hostile gateway) could make the proxy hold hundreds of MB per request.
"""

from __future__ import annotations

import aiohttp

from claude_code_proxy.translate.errors import ProxyError


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The (decompressed) body, or a 502 ProxyError once it passes `limit` bytes."""
    length = response.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.readany():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> ProxyError:
    return ProxyError(
        502,
        "api_error",
        f"the upstream response exceeds {limit} bytes (MAX_UPSTREAM_RESPONSE_BYTES)",
    )
