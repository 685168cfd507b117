"""The admin pages in Debian's headless Chromium, driven by Playwright, against a real
`attestd serve`: log in, review (blurred until clicked, csam_suspect never sent without
the opt-in), change a peer's trust, add an override. Screenshots are kept as artifacts
under test-artifacts/admin-ui/ (or $ATTESTD_TEST_ARTIFACTS)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from attestd.blobs import BlobStore
from attestd.config import load_config
from attestd.db.engine import create_engine
from attestd.db.store import Store
from attestd.federation.peers import PeerStore
from attestd.review import ReviewQueue
from tests.conftest import free_port, stop_server, wait_for
from tests.e2e.test_cli_and_serve import ATTESTD, _get, run
from tests.images import jpeg

CHROMIUM = os.environ.get("ATTESTD_CHROMIUM", "/usr/bin/chromium")
# What Chromium needs to start headless here (the env entry): no sandbox as root, and
# no background connections to a network that is closed.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ARTIFACTS = Path(os.environ.get("ATTESTD_TEST_ARTIFACTS",
                                Path(__file__).resolve().parents[2] / "test-artifacts")) / "admin-ui"
PASSWORD = "a long moderator passphrase"
PEER = "https://peer.example/actor"
SHA_NSFW, SHA_CSAM, SHA_JUNK = "4" * 64, "5" * 64, "7" * 64


@pytest.fixture
def admin_node(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATTESTD_")}
    env["ATTESTD_CONFIG"] = str(tmp_path / "etc" / "config.toml")
    env["ATTESTD_SERVER__PORT"] = str(free_port())
    env["ATTESTD_SCANNER__WORKERS"] = "1"
    run(env, "init")
    run(env, "db", "upgrade")
    proc = subprocess.run([ATTESTD, "admin", "set-password", "--password-stdin", "mod"], env=env,
                          input=PASSWORD + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    asyncio.run(_seed(env))
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([ATTESTD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{env['ATTESTD_SERVER__PORT']}"
    try:
        assert wait_for(lambda: _get(base + "/healthz")[0] == 200, timeout=30), \
            (tmp_path / "serve.log").read_text()
        yield base, env
    finally:
        stop_server(server)
        log.close()


async def _seed(env: dict[str, str]) -> None:
    """Two flagged images and a peer, written the way the node itself writes them."""
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)
    engine = create_engine(cfg.database.url)
    try:
        store = Store(engine)
        review = ReviewQueue(store, BlobStore(cfg.node.data_dir / "review"))
        await review.add(SHA_NSFW, "flagged", "classified nsfw by classifier:test",
                         label="nsfw", data=jpeg(41, (640, 480)))
        await review.add(SHA_CSAM, "flagged", "classified csam_suspect by classifier:test",
                         label="csam_suspect", data=jpeg(42, (640, 480)))
        await review.add(SHA_JUNK, "unreadable", "markup (HTML or SVG), not an image",
                         data=b"<!doctype html><p>junk</p>")
        await PeerStore(store).add(PEER, "https://peer.example/inbox", None, "bad_only",
                                   "https://node.example/activities/1")
    finally:
        await engine.dispose()


async def _state(env: dict[str, str]) -> dict[str, Any]:
    cfg = load_config(Path(env["ATTESTD_CONFIG"]), env)
    engine = create_engine(cfg.database.url)
    try:
        store = Store(engine)
        peer = await PeerStore(store).get(PEER)
        nsfw = await store.lookup(SHA_NSFW)
        return {"trust": peer.trust if peer else None,
                "overrides": [(o.sha256, o.action) for o in await store.list_overrides()],
                "nsfw_verdict": (nsfw.verdict.label, nsfw.verdict.method) if nsfw.verdict else None}
    finally:
        await engine.dispose()


def _loaded_width(img: Any, more_than: int = 0, timeout_s: float = 15) -> int:
    """The image's natural width once it has loaded one wider than ``more_than``. (The
    page's CSP forbids the string evaluation wait_for_function would need.)"""
    deadline = time.monotonic() + timeout_s
    width = 0
    while time.monotonic() < deadline:
        width = int(img.evaluate("i => i.complete ? i.naturalWidth : 0"))
        if width > more_than:
            return width
        time.sleep(0.1)
    return width


def _browser(p: Any) -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does, through "
                    ".ci/install-services) or set ATTESTD_CHROMIUM")
    return p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def test_admin_logs_in_reviews_changes_trust_and_adds_an_override(
        admin_node: tuple[str, dict[str, str]]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, env = admin_node
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.on("request", lambda r: requested.append(r.url))

        # Log in: an unauthenticated visit lands on the login page.
        page.goto(base + "/admin/review")
        expect(page).to_have_url(f"{base}/admin/login?next=/admin/review")
        page.get_by_label("Name").fill("mod")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong name or password")
        page.screenshot(path=ARTIFACTS / "01-login-refused.png")
        page.get_by_label("Name").fill("mod")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_label("Password").press("Enter")  # a keyboard user submits the same way
        expect(page).to_have_url(base + "/admin/review")
        cookie = next(c for c in page.context.cookies() if c["name"] == "attestd_admin")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        # Review: previews are obscured; the csam_suspect one is not there at all.
        nsfw = page.locator(f"#item-{SHA_NSFW}")
        csam = page.locator(f"#item-{SHA_CSAM}")
        img = nsfw.locator("img")
        expect(img).to_have_attribute("src", f"/admin/review/{SHA_NSFW}/preview")
        assert _loaded_width(img) > 0
        expect(csam.locator("img")).to_have_count(0)
        expect(csam).to_contain_text("Not shown")
        assert not any(SHA_CSAM in url for url in requested), requested
        assert not any(url.endswith(f"{SHA_NSFW}/image") for url in requested)
        page.screenshot(path=ARTIFACTS / "02-review-obscured.png", full_page=True)

        # One deliberate click (here the keyboard) reveals that one image.
        nsfw.get_by_role("button", name="Reveal").focus()
        page.keyboard.press("Enter")
        expect(img).to_have_attribute("src", f"/admin/review/{SHA_NSFW}/image")
        assert _loaded_width(img, more_than=320) == 640
        page.screenshot(path=ARTIFACTS / "03-review-revealed.png", full_page=True)
        nsfw.get_by_role("button", name="Hide").click()
        expect(img).to_have_attribute("src", f"/admin/review/{SHA_NSFW}/preview")

        # The csam_suspect image only after the explicit opt-in, and still blurred then.
        csam.get_by_role("button", name="Choose to see this image").click()
        expect(page.get_by_role("status")).to_contain_text("you chose to see this image")
        expect(csam.locator("img")).to_have_attribute("src", f"/admin/review/{SHA_CSAM}/preview")
        assert not any(url.endswith(f"{SHA_CSAM}/image") for url in requested)

        # Confirm the other one bad: it leaves the queue as a human-review verdict.
        nsfw.get_by_label("Label").select_option("nsfw")
        nsfw.get_by_role("button", name="Confirm bad").click()
        expect(page.get_by_role("status")).to_contain_text("confirmed nsfw")
        expect(page.locator(f"#item-{SHA_NSFW}")).to_have_count(0)

        # Unreadable junk: no label is preselected, and Dismiss takes it off the queue.
        junk = page.locator(f"#item-{SHA_JUNK}")
        expect(junk.get_by_label("Label")).to_have_value("")
        junk.get_by_role("button", name="Dismiss").click()
        expect(page.get_by_role("status")).to_contain_text("dismissed")
        expect(page.locator(f"#item-{SHA_JUNK}")).to_have_count(0)

        # Peers: change the trust of one.
        page.get_by_role("link", name="Peers").click()
        row = page.locator(f"tr[data-actor='{PEER}']")
        row.get_by_label(f"Trust for {PEER}").select_option("full")
        row.get_by_role("button", name="Save").click()
        expect(page.get_by_role("status")).to_contain_text("trust full")
        page.screenshot(path=ARTIFACTS / "04-peers.png", full_page=True)

        # Overrides: allow a false positive.
        page.get_by_role("link", name="Overrides").click()
        page.get_by_label("sha256").fill("6" * 64)
        page.get_by_label("Action").select_option("allow")
        page.get_by_label("Note").fill("wrongly blocked holiday photo")
        page.get_by_role("button", name="Add override").click()
        expect(page.locator(f"tr[data-sha256='{'6' * 64}']")).to_contain_text("allow")
        page.screenshot(path=ARTIFACTS / "05-overrides.png", full_page=True)

        # Readable in dark mode too: the page follows the system's colour scheme.
        page.emulate_media(color_scheme="dark")
        page.get_by_role("link", name="Dashboard").click()
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(21, 22, 23)", background
        page.screenshot(path=ARTIFACTS / "06-dashboard-dark.png", full_page=True)
        browser.close()

    state = asyncio.run(_state(env))
    assert state["trust"] == "full"
    assert state["overrides"] == [("6" * 64, "allow")]
    assert state["nsfw_verdict"] == ("nsfw", "human_review")
