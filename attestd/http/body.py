"""Reading an upload's bytes from a pict-rs request: raw body or multipart, size-capped."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import BodyPartReader, web

from activitypub import JSONInputError, load_json
from attestd.errors import RequestError

# Types no image check can honour. SVG and HTML can carry scripts; refusing them by type
# gives a clearer answer than failing to decode them.
_REFUSED_TYPES = ("image/svg+xml", "text/", "application/json", "application/xml",
                  "application/xhtml+xml", "application/pdf", "application/javascript")
_ACCEPTED_PREFIXES = ("image/", "video/", "application/octet-stream", "multipart/form-data")

CHUNK = 64 * 1024


async def read_upload(request: web.Request, limit: int,
                      timeout_s: float | None = None) -> tuple[bytes, str | None]:
    """The uploaded bytes and their claimed media type.

    Raises RequestError 413 as soon as the body is known to exceed ``limit`` (before it
    is read whole), 415 for types that are not images, 400 for malformed multipart, 408
    when the whole body has not arrived within ``timeout_s`` (a client trickling bytes
    would otherwise hold its connection and memory for as long as it likes).
    """
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_upload(request, limit)
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within {timeout_s:g} s "
                                "(server.body_timeout_s); send it at once") from None


async def _read_upload(request: web.Request, limit: int) -> tuple[bytes, str | None]:
    length = request.content_length
    if length is not None and length > limit:
        raise RequestError(413, f"the body is {length} bytes, over the limit of {limit} "
                                "(pictrs.max_body_bytes)", limit=limit)
    ctype = request.content_type if request.headers.get("Content-Type") else None
    if ctype is not None:
        _check_type(ctype)
    if ctype == "multipart/form-data":
        return await _read_multipart(request, limit)
    data = await _read_capped(request.content.iter_chunked(CHUNK), limit)
    return data, ctype


def _check_type(ctype: str) -> None:
    if any(ctype.startswith(p) for p in _REFUSED_TYPES):
        raise RequestError(415, f"{ctype} is not an image type attestd checks; send the image "
                                "bytes with an image/* or video/* Content-Type",
                           content_type=ctype)
    if not ctype.startswith(_ACCEPTED_PREFIXES):
        raise RequestError(415, f"unsupported Content-Type {ctype}; send image/*, video/*, "
                                "application/octet-stream or multipart/form-data",
                           content_type=ctype)


async def _read_multipart(request: web.Request, limit: int) -> tuple[bytes, str | None]:
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                continue
            # pictrs-safety took the field "file"; any part carrying a file name will do.
            if part.name in ("file", "image", "images[]") or part.filename:
                ptype = part.headers.get("Content-Type")
                if ptype:
                    _check_type(ptype.split(";")[0].strip().lower())
                data = await _read_capped(_part_chunks(part), limit)
                if not part.at_eof():
                    raise RequestError(400, "malformed multipart body: it ended before the "
                                            "file part's closing boundary (truncated upload?)")
                # Read to the final boundary so a truncated body is noticed, not half-used.
                while (rest := await reader.next()) is not None:
                    await rest.release()
                return data, ptype
            await part.release()
    except RequestError:
        raise
    except (ValueError, AssertionError, RuntimeError) as exc:
        raise RequestError(400, f"malformed multipart body: {exc}") from None
    raise RequestError(400, "the multipart body has no file part; send the image as the "
                            "field \"file\"")


async def _part_chunks(part: BodyPartReader):  # type: ignore[no-untyped-def]
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            return
        yield chunk


async def _read_capped(chunks, limit: int) -> bytes:  # type: ignore[no-untyped-def]
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise RequestError(413, f"the body is over the limit of {limit} bytes "
                                    "(pictrs.max_body_bytes)", limit=limit)
    return bytes(buf)


async def read_body(request: web.Request, limit: int, what: str = "the body") -> bytes:
    """The whole body, refused with 413 as soon as it is known to exceed ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise RequestError(413, f"{what} is over {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > limit:
            raise RequestError(413, f"{what} is over {limit} bytes")
    return bytes(body)


async def read_json_object(request: web.Request, limit: int) -> dict[str, Any]:
    """A size-capped JSON object body (an empty body is ``{}``); 400 or 413 otherwise.

    Nesting, numbers and strings are bounded as for every JSON a stranger sends
    (``activitypub.load_json``)."""
    body = await read_body(request, limit)
    try:
        doc = load_json(body or b"{}")
    except JSONInputError as exc:
        raise RequestError(400, f"the body is not acceptable JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError(400, "the body must be a JSON object")
    return doc
