"""One error middleware: every failure becomes a JSON body a person can act on."""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from attestd.errors import NotDurable, RequestError
from attestd.logs import REPEAT_KEY, redact_path

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, **detail: object) -> web.Response:
    return web.json_response({"error": message, **detail}, status=status)


def html_error(status: int, message: str) -> web.Response:
    """An error for a person in a browser: the admin pages answer HTML, not JSON."""
    page = (f"<!doctype html><html lang=en><meta charset=utf-8><title>Error {status}</title>"
            f"<body><h1>{status}</h1><p>{html.escape(message)}</p>"
            "<p><a href=\"/admin/\">Back to the admin pages</a></p></body></html>")
    return web.Response(text=page, content_type="text/html", status=status)


def _error(request: web.Request, status: int, message: str, **detail: object) -> web.Response:
    if request.path.startswith("/admin/") or request.path == "/admin":
        return html_error(status, message)
    return json_error(status, message, **detail)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(request, exc.status, exc.message, **exc.detail)
    except NotDurable as exc:
        log.error("%s %s: %s", request.method, request.path, exc)
        return _error(request, 503, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return _error(request, exc.status, message or exc.reason)
    except ConnectionError:
        if not _client_gone(request):
            return _unhandled(request)  # a connection of ours failed, not the client's
        # The client hung up mid-request (most often mid-upload): nothing is wrong here,
        # and nobody is left to answer. Under attack this repeats, so it is thinned out.
        log.info("a client hung up before its request was read: %s %s", request.method,
                 redact_path(request.path), extra={REPEAT_KEY: "client_gone"})
        return _error(request, 400, "the connection was closed before the request was read")
    except Exception:
        return _unhandled(request)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _unhandled(request: web.Request) -> web.Response:
    log.exception("unhandled error on %s %s", request.method, redact_path(request.path))
    return _error(request, 500, "internal error; the node's log has the details")
