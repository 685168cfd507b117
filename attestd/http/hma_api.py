"""HMA-compatible hashing and matching (issue 15): tools built for Meta's
hasher-matcher-actioner (OpenMediaMatch) can use a node as their matcher.

HMA's own routes and response shapes, with the node's imported hash lists as banks
(``list:NAME`` is bank ``NAME``; a bank content id is the list entry's id):

- ``POST /h/hash``, a multipart upload in a ``photo`` field: ``{"pdq": HEX}``.
- ``GET /m/lookup?signal_type=pdq&signal=HEX[&banks=A,B]``:
  ``{"BANK": [{"bank_content_id": ID, "distance": "D"}]}``.
- ``POST /m/lookup[?banks=A,B]`` with the same upload: ``{"pdq": {"BANK": [...]}}``.

HMA's ``GET /h/hash?url=`` is left out: the node does not fetch URLs on request. Every
route needs an admin bearer token, like the admin API. Lookups are plain PDQ distance
within ``matching.pdq_threshold``, as HMA's PDQ index answers them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import BodyPartReader, MultipartReader, web

from attestd.errors import RequestError
from attestd.http.admin_auth import require_admin
from attestd.http.appkeys import CONFIG, INDEX, SERVICES
from scanner import UnreadableImage, normalise_hex

LIST_PREFIX = "list:"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/h/hash", hash_upload)
    app.router.add_get("/m/lookup", lookup_get)
    app.router.add_post("/m/lookup", lookup_post)


async def hash_upload(request: web.Request) -> web.Response:
    await require_admin(request)
    return web.json_response({"pdq": await _upload_pdq(request)})


async def lookup_get(request: web.Request) -> web.Response:
    await require_admin(request)
    signal_type = request.query.get("signal_type")
    signal = request.query.get("signal")
    if request.query.get("url"):
        raise RequestError(400, "looking up a url is not supported: this node does not "
                                "fetch urls; POST the file to /m/lookup instead")
    if not signal or not signal_type:
        raise RequestError(400, "both signal and signal_type are required")
    if signal_type != "pdq":
        raise RequestError(400, f"No such SignalType '{signal_type[:40]}' (only pdq)")
    try:
        pdq = normalise_hex(signal, 64, "a pdq signal")
    except ValueError as exc:
        raise RequestError(400, f"invalid signal: {exc}") from None
    return web.json_response(_banks(request, pdq))


async def lookup_post(request: web.Request) -> web.Response:
    await require_admin(request)
    return web.json_response({"pdq": _banks(request, await _upload_pdq(request))})


def _banks(request: web.Request, pdq: str) -> dict[str, list[dict[str, object]]]:
    wanted = _requested_banks(request.query.get("banks"))
    radius = request.app[CONFIG].matching.pdq_threshold
    out: dict[str, list[dict[str, object]]] = {}
    for entry, distance in request.app[INDEX].lookup_pdq(pdq, radius):
        if not entry.source.startswith(LIST_PREFIX) or entry.label == "ok":
            continue
        bank = entry.source.removeprefix(LIST_PREFIX)
        if wanted is None or bank in wanted:
            # HMA sends the distance as its similarity info's pretty_str(): a string.
            out.setdefault(bank, []).append({"bank_content_id": entry.id,
                                             "distance": str(distance)})
    return out


def _requested_banks(raw: str | None) -> set[str] | None:
    if not raw:
        return None
    return {b.strip() for b in raw.split(",") if b.strip()}


async def _upload_pdq(request: web.Request) -> str:
    """PDQ of the one file uploaded in the request's ``photo`` field."""
    data = await _one_photo(request)
    try:
        hashes = await request.app[SERVICES].pool.hash(data)
    except UnreadableImage as exc:
        raise RequestError(400, f"the photo is unreadable: {exc.reason}") from None
    return hashes.first.pdq


async def _one_photo(request: web.Request) -> bytes:
    if not request.content_type.startswith("multipart/"):
        raise RequestError(400, "Missing multipart/form-data file upload")
    limit = request.app[CONFIG].pictrs.max_body_bytes
    reader = await request.multipart()
    found: bytes | None = None
    async for part in _parts(reader):
        if part.name != "photo":
            raise RequestError(400, f"no such content_type: '{(part.name or '')[:40]}' "
                                    "(only photo)")
        if found is not None:
            raise RequestError(400, "Only one file allowed per request")
        found = await _read_capped(part, limit)
    if found is None:
        raise RequestError(400, "Missing multipart/form-data file upload")
    return found


async def _parts(reader: MultipartReader) -> AsyncIterator[BodyPartReader]:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise RequestError(400, "nested multipart bodies are not supported")
        yield part


async def _read_capped(part: BodyPartReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"the upload is over {limit} bytes (pictrs.max_body_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)
