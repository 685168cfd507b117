"""The remote worker's HTTP client for a node's worker API."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import aiohttp

from scanner.classifier import Classification
from scanner.errors import UnreadableImage
from scanner.worker import Job, WorkerUnavailable

log = logging.getLogger(__name__)


class WorkerAuthError(Exception):
    """The node refused the token: stop, a person must fix the configuration."""


class HttpJobClient:
    """Claims, fetches and reports jobs over ``/api/v1/jobs``."""

    def __init__(self, session: aiohttp.ClientSession, node_url: str, token: str) -> None:
        self.session = session
        self.node_url = node_url
        self.base = node_url.rstrip("/") + "/api/v1/jobs"
        self._auth = {"Authorization": f"Bearer {token}"}

    async def claim(self, max_jobs: int, wait_s: float) -> list[Job]:
        """Up to ``max_jobs`` jobs, long-polling up to ``wait_s``."""
        doc = await self._call("POST", "/claim", params={"max": str(max_jobs), "wait": str(wait_s)},
                               timeout=wait_s + 15)
        return [Job(int(j["id"]), str(j["sha256"])) for j in doc.get("jobs", [])]

    async def image(self, job: Job) -> bytes:
        """The job's image; UnreadableImage if the node no longer keeps it (410)."""
        try:
            async with self.session.get(f"{self.base}/{job.id}/image", headers=self._auth,
                                        timeout=aiohttp.ClientTimeout(total=60)) as r:
                if r.status == 410:
                    raise UnreadableImage("corrupt", "the node no longer keeps this image")
                await self._check(r)
                return await r.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WorkerUnavailable(str(exc) or type(exc).__name__) from None

    async def result(self, job: Job, result: Classification) -> None:
        """Post the verdict (409, the job was settled meanwhile, is not an error)."""
        await self._call("POST", f"/{job.id}/result", json={
            "label": result.label, "model_id": result.model_id, "scores": result.scores,
            "publishable": result.publishable}, tolerate=(409,))

    async def fail(self, job: Job, error: str) -> None:
        """Report the job as failed (409, settled meanwhile, is not an error)."""
        await self._call("POST", f"/{job.id}/fail", json={"error": error}, tolerate=(409,))

    async def release(self, jobs: Sequence[Job]) -> None:
        """Hand the jobs back to the node unworked."""
        await self._call("POST", "/release", json={"ids": [j.id for j in jobs]})

    async def _call(self, method: str, path: str, *, timeout: float = 30,
                    tolerate: tuple[int, ...] = (), **kw: Any) -> dict[str, Any]:
        try:
            async with self.session.request(method, self.base + path, headers=self._auth,
                                            timeout=aiohttp.ClientTimeout(total=timeout),
                                            **kw) as r:
                if r.status in tolerate:
                    # A lease that expired meanwhile: the job is someone else's now.
                    log.warning("%s %s: %s", method, path, (await r.text())[:200])
                    return {}
                await self._check(r)
                doc = await r.json()
                return doc if isinstance(doc, dict) else {}
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise WorkerUnavailable(str(exc) or type(exc).__name__) from None

    async def _check(self, r: aiohttp.ClientResponse) -> None:
        if r.status == 401:
            raise WorkerAuthError(f"{self.node_url}: {(await r.text())[:300]}")
        if r.status >= 500 or r.status in (408, 429):
            raise WorkerUnavailable(f"HTTP {r.status}")
        if r.status >= 400:
            raise WorkerUnavailable(f"HTTP {r.status}: {(await r.text())[:200]}")


def pair_nodes_with_tokens(nodes: Sequence[str], tokens: Sequence[str]) -> list[tuple[str, str]]:
    """Each node with its token, in the order given; ValueError says what does not match."""
    if not nodes:
        raise ValueError("give at least one --node URL")
    seen = {n.rstrip("/") for n in nodes}
    if len(seen) != len(nodes):
        raise ValueError("a --node is given twice: each node once, with its own token")
    if len(tokens) != len(nodes):
        raise ValueError(f"{len(nodes)} --node URLs but {len(tokens)} tokens: give one token "
                         "per node, in the same order (--token-file per node, or "
                         "$ATTESTD_WORKER_TOKENS separated by commas)")
    empty = [n for n, t in zip(nodes, tokens, strict=True) if not t.strip()]
    if empty:
        raise ValueError(f"the token for {empty[0]} is empty")
    return [(n, t.strip()) for n, t in zip(nodes, tokens, strict=True)]
