"""Operations endpoints: `/healthz` (can this process reach its storage?) and `/metrics`
(Prometheus text format) with request counts, latencies and in-flight requests per route."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .context import services
from .http import InFlight

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class Metrics:
    """One collector registry per app, so several apps in one process never share counters."""

    def __init__(self, in_flight: InFlight) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "dockyard_http_requests", "HTTP requests handled", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "dockyard_http_request_duration_seconds",
            "Time to produce a response (bodies streamed after it are not included)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        gauge = Gauge("dockyard_http_requests_in_flight", "Requests being handled", registry=self.registry)
        gauge.set_function(lambda: in_flight.count)  # the count graceful shutdown already keeps

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        finally:
            self.requests.labels(request.method, route, str(status)).inc()
            self.latency.labels(request.method, route).observe(time.perf_counter() - started)


METRICS = web.AppKey("metrics", Metrics)


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
    storage = services(request).storage
    try:
        await storage.list("catalog", limit=1)
    except Exception as error:  # any failure to reach storage makes this replica unhealthy
        return web.json_response({"status": "unavailable", "storage": storage.name, "error": str(error)}, status=503)
    return web.json_response({"status": "ok", "storage": storage.name})


def add_observability(app: web.Application) -> None:
    app.router.add_route("GET", "/healthz", health)
    app.router.add_route("GET", "/metrics", metrics)
