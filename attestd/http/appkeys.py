"""Typed application state, declared in one place."""

from __future__ import annotations

from aiohttp import web

from attestd.bad_hashes import BadHashIndex
from attestd.config import Config
from attestd.db.store import Store
from attestd.federation.runtime import Federation
from attestd.metrics import Metrics
from attestd.pipeline import CheckPipeline
from attestd.services import NodeServices

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
INDEX = web.AppKey("index", BadHashIndex)
PIPELINE = web.AppKey("pipeline", CheckPipeline)
METRICS = web.AppKey("metrics", Metrics)
FEDERATION = web.AppKey("federation", Federation)
SERVICES = web.AppKey("services", NodeServices)
