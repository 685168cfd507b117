"""Shared by the benchmarks: what machine they ran on, and waiting for a node."""

from __future__ import annotations

import asyncio
import os
import platform

import aiohttp


def describe() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) // 1024 // 1024} GiB"
                break
    except OSError:
        pass
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores{mem}; "
            f"Python {platform.python_version()} on {platform.system()} {platform.release()}")


async def wait_http(url: str, timeout_s: float = 30) -> None:
    """Wait until ``url`` answers 200."""
    async with aiohttp.ClientSession() as s:
        for _ in range(int(timeout_s * 10)):
            try:
                async with s.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"{url} did not come up")
