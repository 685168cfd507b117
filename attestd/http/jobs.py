"""The worker API: GPU workers claim jobs, fetch their images and post verdicts.

Every route needs ``Authorization: Bearer <token>`` from ``attestd workers add``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from attestd.errors import RequestError
from attestd.http.body import read_json_object
from attestd.jobs.queue import JobQueue
from scanner.classifier import CLASSIFIER_LABELS, Classification, model_id_problem

JOBS = web.AppKey("jobs", JobQueue)
RESULT_MAX_BYTES = 64 * 1024


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/jobs/claim", claim)
    app.router.add_post("/api/v1/jobs/release", release)
    app.router.add_get("/api/v1/jobs/{id}/image", image)
    app.router.add_post("/api/v1/jobs/{id}/result", result)
    app.router.add_post("/api/v1/jobs/{id}/fail", fail)


async def _worker(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestError(401, "missing bearer token: send Authorization: Bearer <token> from "
                                "`attestd workers add NAME`")
    name = await request.app[JOBS].jobs.worker_for_token(token.strip())
    if name is None:
        raise RequestError(401, "unknown worker token (was the worker removed?)")
    return name


def _job_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise RequestError(400, f"{raw!r} is not a job id")
    return int(raw)


async def claim(request: web.Request) -> web.Response:
    worker = await _worker(request)
    try:
        max_jobs = int(request.query.get("max", "1"))
        wait_s = float(request.query.get("wait", "0"))
    except ValueError:
        raise RequestError(400, "max must be an integer and wait a number of seconds") from None
    if max_jobs < 1 or wait_s < 0:
        raise RequestError(400, "max must be at least 1 and wait not negative")
    queue = request.app[JOBS]
    claimed = await queue.claim(worker, max_jobs, wait_s)
    return web.json_response({"jobs": [
        {"id": j.id, "sha256": j.sha256, "lease_expires_at": j.lease_expires_at.isoformat(),
         "image": f"/api/v1/jobs/{j.id}/image"} for j in claimed]})


async def _leased_to(request: web.Request, worker: str, job_id: int) -> None:
    holder = await request.app[JOBS].jobs.lease_holder(job_id)
    if holder is None:
        raise RequestError(404, f"no job {job_id}")
    state, owner, _ = holder
    if state != "leased" or owner != worker:
        raise RequestError(409, f"job {job_id} is not leased to this worker")


async def image(request: web.Request) -> web.Response:
    worker = await _worker(request)
    job_id = _job_id(request)
    await _leased_to(request, worker, job_id)
    queue = request.app[JOBS]
    sha = await queue.jobs.sha256_of(job_id)
    data = await queue.blobs.get(sha) if sha else None
    if data is None:
        raise RequestError(410, f"the image of job {job_id} is no longer kept")
    return web.Response(body=data, content_type="application/octet-stream",
                        headers={"X-Sha256": sha or ""})


async def result(request: web.Request) -> web.Response:
    worker = await _worker(request)
    job_id = _job_id(request)
    doc = await read_json_object(request, RESULT_MAX_BYTES)
    label, model_id, scores = doc.get("label"), doc.get("model_id"), doc.get("scores", {})
    if label not in CLASSIFIER_LABELS:
        raise RequestError(400, f"label must be one of {', '.join(CLASSIFIER_LABELS)}")
    if (problem := model_id_problem(model_id)) is not None:
        raise RequestError(400, problem)
    if not isinstance(scores, dict) or not all(
            isinstance(k, str) and isinstance(v, (int, float)) for k, v in scores.items()):
        raise RequestError(400, "scores must map names to numbers")
    classification = Classification(label=label, model_id=str(model_id),
                                    scores={k: float(v) for k, v in scores.items()},
                                    publishable=bool(doc.get("publishable", True)))
    outcome, verdict = await request.app[JOBS].complete(worker, job_id, classification)
    if outcome == "unknown":
        raise RequestError(404, f"no job {job_id}")
    if outcome == "expired":
        raise RequestError(409, f"the lease on job {job_id} expired; it went back to the queue")
    if outcome == "not_yours":
        raise RequestError(409, f"job {job_id} is not leased to this worker")
    if outcome == "conflict":
        raise RequestError(409, f"job {job_id} was already finished with another result")
    body: dict[str, Any] = {"status": outcome}
    if verdict is not None:
        body["verdict"] = verdict.id
    return web.json_response(body)


async def fail(request: web.Request) -> web.Response:
    worker = await _worker(request)
    job_id = _job_id(request)
    doc = await read_json_object(request, RESULT_MAX_BYTES)
    error = str(doc.get("error", "unreadable"))[:1000]
    if not await request.app[JOBS].fail(worker, job_id, error):
        raise RequestError(409, f"job {job_id} is not leased to this worker")
    return web.json_response({"status": "failed"})


async def release(request: web.Request) -> web.Response:
    worker = await _worker(request)
    doc = await read_json_object(request, RESULT_MAX_BYTES)
    ids = doc.get("ids", [])
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids) or len(ids) > 1000:
        raise RequestError(400, "ids must be a list of job ids")
    n = await request.app[JOBS].jobs.release(worker, ids)
    return web.json_response({"released": n})
