"""Federation: throughput (part 1) and a simulated federation (part 2, see
bench/federation_sim.py), with real servers on loopback.

1. Signed deliveries/s: one `attestd serve` node delivers queued activities to 20
   follower servers (in a separate process; they count and spot-check signatures).
2. Verified inbox activities/s: a sender actor on loopback posts distinct signed
   activities to the node's inbox from 16 concurrent clients; the node verifies each
   signature (key cached after the first fetch), de-duplicates and records it.

Bar (issue 5): >= 500 verified inbox activities/s on 2 cores. Medians of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from activitypub import public_key_pem, sign_request  # noqa: E402
from bench.machine import describe  # noqa: E402
from bench.node import running_node  # noqa: E402
from tests.peers import free_port  # noqa: E402

ATTESTD = str(Path(sys.executable).with_name("attestd"))


def run_followers(ports: list[int], ready: multiprocessing.Event, counter: multiprocessing.Value) -> None:  # type: ignore[valid-type]
    """20 follower inboxes in one process: count deliveries, verify every 50th signature."""
    from activitypub import parse_signature_header, verify_request
    from activitypub.fetch import Fetcher, Keyring, make_session

    async def main() -> None:
        session = make_session(allow_private=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        keyring = Keyring(Fetcher(session, key_id="http://127.0.0.1/f#main-key", private_key=key,
                                  allow_private=True))
        seen = 0

        async def inbox(request: web.Request) -> web.Response:
            nonlocal seen
            body = await request.read()
            seen += 1
            if seen % 50 == 1:
                params = parse_signature_header(request.headers["Signature"])
                _, pub = await keyring.public_key(params.key_id)
                verify_request(method="POST", path=request.path, query="",
                               headers=dict(request.headers), body=body, params=params,
                               public_key=pub)
            with counter.get_lock():
                counter.value += 1
            return web.Response(status=202)

        app = web.Application()
        app.router.add_post("/inbox", inbox)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        for port in ports:
            await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


async def deliveries_round(db_url: str, base: str, inboxes: list[str], per_inbox: int,
                           counter: multiprocessing.Value) -> float:  # type: ignore[valid-type]
    from attestd.db.engine import create_engine
    from attestd.db.store import Store
    from attestd.federation.store import FederationStore

    engine = create_engine(db_url)
    fed = FederationStore(Store(engine))
    start_count = counter.value
    total = per_inbox * len(inboxes)
    t0 = time.perf_counter()
    for _ in range(per_inbox):
        await fed.enqueue(inboxes, {"@context": "https://www.w3.org/ns/activitystreams",
                                    "id": f"{base}/activities/{uuid.uuid4()}", "type": "Create",
                                    "actor": f"{base}/actor",
                                    "object": {"type": "Note", "content": "x" * 400}})
    while counter.value - start_count < total:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    await engine.dispose()
    return total / elapsed


async def inbox_round(node: str, n: int, concurrency: int) -> tuple[float, int]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    port = free_port()
    actor_id = f"http://127.0.0.1:{port}/users/sender"
    actor = {"@context": ["https://www.w3.org/ns/activitystreams", "https://w3id.org/security/v1"],
             "id": actor_id, "type": "Service", "inbox": f"{actor_id}/inbox",
             "publicKey": {"id": f"{actor_id}#main-key", "owner": actor_id,
                           "publicKeyPem": public_key_pem(key)}}

    async def serve_actor(request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(actor), content_type="application/activity+json")

    app = web.Application()
    app.router.add_get("/users/sender", serve_actor)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"{node}/inbox"
    requests = []
    for _ in range(n):
        body = json.dumps({"@context": "https://www.w3.org/ns/activitystreams",
                           "id": f"{actor_id}/activities/{uuid.uuid4()}", "type": "Create",
                           "actor": actor_id,
                           "object": {"type": "Note", "content": "y" * 400}}).encode()
        headers = sign_request(method="POST", url=url, key_id=f"{actor_id}#main-key",
                               private_key=key, body=body,
                               headers={"Content-Type": "application/activity+json"})
        requests.append((body, headers))
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        # Warm the node's key cache with one request first.
        async with s.post(url, data=requests[0][0], headers=requests[0][1]) as r:
            assert r.status == 202, await r.text()
        queue = list(reversed(requests[1:]))

        async def worker() -> None:
            nonlocal ok
            while queue:
                body, headers = queue.pop()
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    ok += r.status == 202

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    await runner.cleanup()
    return (n - 1) / elapsed, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--followers", type=int, default=20)
    ap.add_argument("--per-follower", type=int, default=50)
    ap.add_argument("--inbox-activities", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--part", choices=("1", "2", "all"), default="all",
                    help="1: throughput; 2: the simulated federation (several minutes)")
    ap.add_argument("--sim-variants", choices=("both", "default", "perceptual"), default="both")
    ap.add_argument("--sim-span", type=float, default=300.0,
                    help="part 2: seconds over which originals are uploaded")
    args = ap.parse_args()
    print(f"machine: {describe()}")
    if args.part in ("1", "all"):
        part1(args)
    if args.part in ("2", "all"):
        from bench.federation_sim import main as part2
        print("\npart 2: simulated federation (10 nodes, 1 000 images each)")
        part2(span_s=args.sim_span, variants=args.sim_variants)


def part1(args: argparse.Namespace) -> None:

    ports = [free_port() for _ in range(args.followers)]
    ready = multiprocessing.Event()
    counter = multiprocessing.Value("q", 0)
    followers = multiprocessing.Process(target=run_followers, args=(ports, ready, counter),
                                        daemon=True)
    followers.start()
    ready.wait(30)
    inboxes = [f"http://127.0.0.1:{p}/inbox" for p in ports]

    try:
        with running_node(federation__allow_private_addresses="true",
                          scanner__workers="1") as node:
            base, db_url = node.base, node.db_url
            delivery_rates, inbox_rates = [], []
            for r in range(args.rounds):
                rate = asyncio.run(deliveries_round(db_url, base, inboxes, args.per_follower,
                                                    counter))
                delivery_rates.append(rate)
                print(f"  deliveries round {r + 1}: {rate:7.1f} signed deliveries/s "
                      f"({args.per_follower * args.followers} to {args.followers} followers)")
            for r in range(args.rounds):
                rate, ok = asyncio.run(inbox_round(base, args.inbox_activities, args.concurrency))
                assert ok == args.inbox_activities - 1, f"only {ok} accepted"
                inbox_rates.append(rate)
                print(f"  inbox round {r + 1}: {rate:7.1f} verified activities/s")
    finally:
        followers.terminate()
    d, i = statistics.median(delivery_rates), statistics.median(inbox_rates)
    print(f"signed deliveries: median {d:.0f}/s to {args.followers} followers")
    print(f"verified inbox activities: median {i:.0f}/s (target >= 500/s: "
          f"{'met' if i >= 500 else 'NOT met'})")


if __name__ == "__main__":
    main()
