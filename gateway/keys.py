"""The gateway application's typed keys: what every handler may reach through ``request.app``."""

from __future__ import annotations

from aiohttp import web

from engine import Engine
from engine.catalogue import Catalogue
from engine.jobs import JobQueue
from engine.settings import Settings

from .metrics import Metrics
from .present import Presenter

ENGINE = web.AppKey("engine", Engine)
SETTINGS = web.AppKey("settings", Settings)
CATALOGUE = web.AppKey("catalogue", Catalogue)
JOBS = web.AppKey("jobs", JobQueue)
PRESENTER = web.AppKey("presenter", Presenter)
METRICS = web.AppKey("metrics", Metrics)
STARTED = web.AppKey("started", float)
