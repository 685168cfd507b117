"""The container image, the compose file and the systemd units, as an admin deploys them.

The static checks always run. The smoke test builds the image with podman (skipped only
where podman is not installed) and runs it as compose does: read-only, no capabilities,
an unprivileged user, a /data volume. No image registry is reachable from the suite, so
the base is a minimal Debian bookworm with python3 bootstrapped with debootstrap and
imported as a local image (built once, then reused from podman's storage), and the
dependencies' wheels are built on the host with pip and handed to the build offline.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dockerfile
import pytest
import yaml

from tests.conftest import free_port, wait_for
from tests.images import jpeg

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BASE = "python:3.11-slim-bookworm"
COMPILERS = re.compile(r"\b(g\+\+|gcc|clang|build-essential|cc|c\+\+)\b")
PORT = 8470  # the port the image's node listens on inside the container
TEST_BASE = "localhost/attestd-test-base:bookworm"
TEST_IMAGE = "localhost/attestd:smoke"


# -- static: Dockerfiles ------------------------------------------------------------------------

def _stages(path: Path) -> tuple[list[Any], list[list[Any]]]:
    """(instructions before the first FROM, instructions of each stage)."""
    preamble: list[Any] = []
    stages: list[list[Any]] = []
    for cmd in dockerfile.parse_file(str(path)):
        if cmd.cmd == "FROM":
            stages.append([cmd])
        elif stages:
            stages[-1].append(cmd)
        else:
            preamble.append(cmd)
    return preamble, stages


def _final_stage_checks(path: Path) -> list[Any]:
    preamble, stages = _stages(path)
    assert [c.value for c in preamble if c.cmd == "ARG"] == [(f"BASE={DEFAULT_BASE}",)], \
        f"{path.name}: the base image is an argument defaulting to the official Python image"
    assert len(stages) >= 2, f"{path.name}: a build stage and a runtime stage"
    assert all(s[0].value[0] == "${BASE}" for s in stages)
    build_runs = " ".join(" ".join(c.value) for s in stages[:-1] for c in s if c.cmd == "RUN")
    assert "g++" in build_runs, "the build stage has a compiler for pdqhash"
    final = stages[-1]
    for c in final:
        if c.cmd == "RUN":
            assert not COMPILERS.search(" ".join(c.value)), f"compiler in the runtime stage: {c}"
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as an unprivileged user"
    return final


def _env_of(stage: list[Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in stage:
        if c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2], strict=True))
    return env


def test_node_dockerfile_is_multistage_unprivileged_with_data_volume_and_healthcheck() -> None:
    final = _final_stage_checks(ROOT / "Dockerfile")
    volumes = [v for c in final if c.cmd == "VOLUME" for v in c.value]
    assert "/data" in volumes
    health = [" ".join(c.value) for c in final if c.cmd == "HEALTHCHECK"]
    assert health and "/healthz" in health[0]
    env = _env_of(final)
    assert env["ATTESTD_NODE__DATA_DIR"] == "/data"
    assert env["ATTESTD_DATABASE__URL"].startswith("sqlite:////data/")
    assert env["ATTESTD_CONFIG"].startswith("/data/")
    ignored = (ROOT / ".dockerignore").read_text("utf-8").split()
    for private in ("data", "config.toml", ".venv", ".git"):
        assert private in ignored, f"{private} must not be sent to the build"


def test_gpu_worker_dockerfile_installs_the_classifier_and_reads_weights_offline() -> None:
    path = ROOT / "deploy" / "worker.Dockerfile"
    final = _final_stage_checks(path)
    _, stages = _stages(path)
    build_runs = " ".join(" ".join(c.value) for s in stages[:-1] for c in s if c.cmd == "RUN")
    assert "[classifier]" in build_runs
    env = _env_of(final)
    assert env["HF_HUB_OFFLINE"] == "1" and env["ATTESTD_CLASSIFIER__CACHE_DIR"] == "/models"
    entry = [c for c in final if c.cmd == "ENTRYPOINT"]
    assert entry and entry[0].json and list(entry[0].value) == ["attestd", "worker"]


# -- static: compose ------------------------------------------------------------------------------

def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "deploy" / "compose.yml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in service["environment"])


def test_compose_keeps_attestd_internal_and_points_pictrs_at_it() -> None:
    compose = _compose()
    node, pictrs = compose["services"]["attestd"], compose["services"]["pictrs"]
    assert "ports" not in node, "attestd publishes no port"
    assert compose["networks"]["attestd"]["internal"] is True
    assert "attestd" in node["networks"] and "attestd" in pictrs["networks"]
    env = _env(node)
    assert env["ATTESTD_NODE__BASE_URL"].startswith("${ATTESTD_BASE_URL:?")
    # pict-rs is authorised by a secret name, never by an address on Docker's networks.
    assert env["ATTESTD_PICTRS__ALLOWED_IPS"] == "[]"
    caller = "${ATTESTD_SCAN_CALLER:?set ATTESTD_SCAN_CALLER in .env}"
    assert env["ATTESTD_PICTRS__ALLOWED_CALLERS"] == f'["{caller}"]'
    assert _env(pictrs)["PICTRS__MEDIA__EXTERNAL_VALIDATION"] == \
        f"http://attestd:{PORT}/api/v1/scan/{caller}"
    assert pictrs["depends_on"]["attestd"]["condition"] == "service_healthy"
    assert any("/healthz" in part for part in node["healthcheck"]["test"])
    assert node["read_only"] is True and node["cap_drop"] == ["ALL"]
    assert any(v.endswith(":/data") for v in node["volumes"])


def test_env_template_names_every_variable_compose_requires() -> None:
    text = (ROOT / "deploy" / "compose.yml").read_text("utf-8")
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    template = (ROOT / "deploy" / "env.example").read_text("utf-8")
    defined = set(re.findall(r"^([A-Z_]+)=", template, re.M))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required <= defined, f"missing from env.example: {required - defined}"
    assert used - defined <= {"PICTRS_IMAGE"}


# -- static: systemd ----------------------------------------------------------------------------------

UNITS = ROOT / "deploy" / "systemd"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / name).read_text("utf-8"))
    return parser


@pytest.mark.parametrize("name", ["attestd.service", "attestd-worker.service"])
def test_systemd_units_run_unprivileged_and_hardened(name: str) -> None:
    svc = _unit(name)["Service"]
    assert svc["User"] == "attestd"
    assert svc["ProtectSystem"] == "strict"
    assert svc["NoNewPrivileges"] == "yes"
    assert svc["StateDirectory"].startswith("attestd")
    assert svc["UMask"] == "0077"
    assert svc["CapabilityBoundingSet"] == ""


def test_systemd_units_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is missing: .ci/install-services installs systemd"
    bindir = str(Path(sys.executable).parent) + "/"
    units = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text("utf-8").replace("/opt/attestd/bin/", bindir), "utf-8")
        units.append(str(copy))
    assert len(units) == 2, units
    proc = subprocess.run([analyze, "verify", *units], capture_output=True, text=True, timeout=60)
    # Unknown or misspelt keys are only warnings: any output counts as a failure.
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), \
        proc.stdout + proc.stderr


# -- smoke: build and run the image with podman -------------------------------------------------------

def _podman() -> list[str]:
    podman = shutil.which("podman")
    assert podman is not None, "podman is missing: .ci/install-services installs it"
    # crun refuses cgroup v1/hybrid hosts ("cgroups in hybrid mode not supported"); runc
    # runs on both, so it is used wherever it is installed.
    runc = shutil.which("runc")
    return [podman, "--runtime", runc] if runc else [podman]


def _ulimits() -> list[str]:
    # podman raises RLIMIT_NOFILE/NPROC for root by default, which fails (EPERM) where the
    # suite itself runs without CAP_SYS_RESOURCE; ask for what we have instead.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    nproc = 4096 if nproc == resource.RLIM_INFINITY else min(nproc - 1, 4096)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _sh(cmd: list[str], timeout: float = 900, **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{cmd[:6]} exited {proc.returncode}:\n{proc.stdout[-3000:]}" \
                                 f"\n{proc.stderr[-3000:]}"
    return proc


def _ensure_base(podman: list[str]) -> str:
    if os.environ.get("ATTESTD_CONTAINER_BASE"):
        return os.environ["ATTESTD_CONTAINER_BASE"]
    if subprocess.run([*podman, "image", "exists", TEST_BASE]).returncode == 0:
        return TEST_BASE
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        pytest.fail("the container smoke test needs a local base image: install debootstrap and "
                    "run as root, or set ATTESTD_CONTAINER_BASE to a Debian image with python3")
    with tempfile.TemporaryDirectory(prefix="attestd-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _sh([debootstrap, "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
             "bookworm", str(rootfs), "http://deb.debian.org/debian"], timeout=1200)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (rootfs / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _sh([*podman, "import", "--change", 'CMD ["/bin/bash"]', "-", TEST_BASE], stdin=tar.stdout)
        tar.wait()
    return TEST_BASE


@pytest.fixture(scope="module")
def image() -> Iterator[tuple[list[str], str]]:
    podman = _podman()
    base = _ensure_base(podman)
    with tempfile.TemporaryDirectory(prefix="attestd-ctx-") as tmp:
        ctx = Path(tmp)
        listed = _sh(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                     cwd=ROOT).stdout
        for name in filter(None, listed.split("\0")):
            if (ROOT / name).is_file():
                (ctx / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, ctx / name)
        # The build cannot reach PyPI here: the dependencies' wheels come from the host.
        _sh([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(ctx / "wheels"),
             f"{ctx}[postgres]", "setuptools", "wheel"])
        for own in (ctx / "wheels").glob("attestd_node-*"):
            own.unlink()
        _sh([*podman, "build", "--format", "docker", *_ulimits(), "--build-arg", f"BASE={base}",
             "--build-arg", "PIP_NO_INDEX=1", "--build-arg", "PIP_FIND_LINKS=/src/wheels",
             "-t", TEST_IMAGE, str(ctx)], timeout=1800)
    yield podman, TEST_IMAGE
    # The build stage's layers (compiler, wheels) would pile up run after run.
    subprocess.run([*podman, "image", "prune", "-f"], capture_output=True, timeout=300)


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Content-Type": "image/jpeg"} if body else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _healthy(url: str) -> bool:
    try:
        return _http("GET", url)[0] == 200
    except (OSError, ValueError):
        return False


@pytest.mark.timeout(2400)
def test_container_serves_scans_and_runs_unprivileged(image: tuple[list[str], str]) -> None:
    podman, tag = image
    name = f"attestd-smoke-{uuid.uuid4().hex[:8]}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    secret = uuid.uuid4().hex
    # As deploy/compose.yml runs it: read-only root, no capabilities, a named volume.
    _sh([*podman, "run", "-d", "--name", name, *_ulimits(), "-p", f"127.0.0.1:{port}:{PORT}",
         "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
         "--security-opt", "no-new-privileges", "-v", f"{name}:/data",
         "-e", f"ATTESTD_NODE__BASE_URL={base}",
         "-e", f'ATTESTD_PICTRS__ALLOWED_CALLERS=["{secret}"]',
         "-e", "ATTESTD_PICTRS__ALLOWED_IPS=[]", "-e", "ATTESTD_SCANNER__WORKERS=1", tag])
    try:
        assert wait_for(lambda: _healthy(f"{base}/healthz"), timeout=90), \
            subprocess.run([*podman, "logs", name], capture_output=True, text=True).stderr
        # The image's own HEALTHCHECK command passes.
        _sh([*podman, "healthcheck", "run", name], timeout=60)

        image_bytes = jpeg(7)
        status, body = _http("POST", f"{base}/api/v1/scan/{secret}", image_bytes)
        assert status == 200 and body["decision"] == "accept", body
        status, body = _http("POST", f"{base}/api/v1/scan/IPADDR", image_bytes)
        assert status == 401, "no address is trusted: the bridge's address is everyone's"
        # The CLI inside the container works on the same /data: a block applies at once.
        _sh([*podman, "exec", name, "attestd", "override", "block", "--sha256",
             hashlib.sha256(image_bytes).hexdigest()])
        assert wait_for(lambda: _http("POST", f"{base}/api/v1/scan/{secret}", image_bytes)[0] == 406,
                        timeout=15)

        uid = _sh([*podman, "exec", name, "id", "-u"]).stdout.strip()
        assert uid != "0" and uid == "10001"
        top = _sh([*podman, "top", name, "user", "args"]).stdout
        node_lines = [ln for ln in top.splitlines() if "attestd serve" in ln]
        assert node_lines and all(ln.split()[0] == "attestd" for ln in node_lines), top
        modes = _sh([*podman, "exec", name, "stat", "-c", "%a %n", "/data", "/data/keys",
                     "/data/keys/ed25519.pem", "/data/keys/rsa-2048.pem", "/data/attestd.db",
                     "/data/config.toml"]).stdout.split("\n")
        assert [m.split()[0] for m in modes if m] == ["700", "700", "600", "600", "600", "600"], \
            modes
        compilers = subprocess.run([*podman, "exec", name, "sh", "-c",
                                    "command -v gcc cc g++ c++ clang make"],
                                   capture_output=True, text=True)
        assert compilers.stdout.strip() == "", f"compiler at run time: {compilers.stdout}"
    finally:
        subprocess.run([*podman, "stop", "-t", "10", name], capture_output=True, timeout=60)
        logs = subprocess.run([*podman, "logs", name], capture_output=True, text=True).stderr
        subprocess.run([*podman, "rm", "-f", name], capture_output=True, timeout=60)
        subprocess.run([*podman, "volume", "rm", "-f", name], capture_output=True, timeout=60)
    assert "Traceback" not in logs, logs
