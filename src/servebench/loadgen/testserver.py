"""A small HTTP server with controllable behaviour, for testing and benchmarking the generator.

    python -m servebench.loadgen.testserver --port 8089 [--cpus 0]

Endpoints (any method):
  /ok                          200 at once (the trivial endpoint of the capacity benchmark)
  /classify_batch              200 with one fake label per text of {"texts": [...]}
  /delay/<ms>                  200 after <ms> milliseconds
  /status/<code>               answers <code> at once
  /stall/<start_ms>/<len_ms>/<ms>
                               200 after <ms>, except that the server "freezes" from <start_ms>
                               after the first request to this path for <len_ms>: a request
                               arriving in that window is held until the window ends
  /fifo/<ms>                    one server, one queue: requests are served one at a time, in
                               arrival order, each for <ms> milliseconds on an exact timeline
                               (an M/D/1 queue under Poisson arrivals: queueing theory knows its
                               capacity)
  /batch/<ms>/<per_ms>/<max>   one batching server, one queue: whenever it is free, every
                               waiting request (at most <max>, oldest first) is served as one
                               batch of <ms> + <per_ms> x its size milliseconds (its capacity,
                               under overload: 1000 <max> / (<ms> + <per_ms> <max>) req/s)
  /readyz, /livez              200 (the probes of a BentoML server)
  /metrics                     with --metrics: a Prometheus counter of /classify_batch requests
                               (BentoML's name); 404 without
  /by-text                     behaviour chosen by the request's text ({"text": ...} or
                               {"texts": [...]}): "status:<code>", "sleep:<ms>", anything else 200

With --require-header 'Name: value', every request without that header (and value) gets 401:
a protected endpoint, for the generator's -H/--header.

With --classify-ms MS, /classify_batch serves one request at a time, MS milliseconds each, in
arrival order (as /fifo/<MS>): a stand-in for a one-worker model server with a known capacity
(1000 / MS requests per second), e.g. the external target's servers in the tests.

With --raw, a minimal HTTP/1.1 server instead (bodies by Content-Length only) that answers
every request 200 at once: many times faster than aiohttp, so that the capacity benchmark
measures the generator rather than the server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import time

from aiohttp import web

_stall_origin: dict[str, float] = {}


def _reply(status: int = 200, payload: object | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"status": status} if payload is None else payload),
        content_type="application/json",
    )


async def ok(request: web.Request) -> web.Response:
    await request.read()
    return _reply()


# Options of the stand-in model server (--classify-ms, --metrics), set once by main().
MODEL_SERVER = {"service_s": 0.0, "metrics": False, "requests": 0}


async def classify_batch(request: web.Request) -> web.Response:
    body = await request.json()
    MODEL_SERVER["requests"] += 1
    if MODEL_SERVER["service_s"]:
        await _in_queue(request.path, MODEL_SERVER["service_s"])
    return _reply(payload=[{"label": "neutral", "score": 1.0} for _ in body.get("texts", [])])


async def delay(request: web.Request) -> web.Response:
    await request.read()
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return _reply()


async def status(request: web.Request) -> web.Response:
    await request.read()
    return _reply(int(request.match_info["code"]))


async def stall(request: web.Request) -> web.Response:
    await request.read()
    now = time.monotonic()
    key = request.path
    origin = _stall_origin.setdefault(key, now)
    start = origin + int(request.match_info["start_ms"]) / 1000
    end = start + int(request.match_info["len_ms"]) / 1000
    if start <= now < end:
        await asyncio.sleep(end - now)
    await asyncio.sleep(int(request.match_info["ms"]) / 1000)
    return _reply()


# /fifo: when the one server finishes its last request (time.monotonic()), per service time.
_fifo_busy_until: dict[str, float] = {}


async def fifo(request: web.Request) -> web.Response:
    """One server, one queue: request i is done at max(its arrival, the previous request's
    completion) + the service time, on an exact timeline (a late wake-up of one request does
    not delay the next), so the server is an ideal M/D/1 queue under Poisson arrivals."""
    await request.read()
    await _in_queue(request.path, float(request.match_info["ms"]) / 1000)
    return _reply()


async def _in_queue(key: str, service_s: float) -> None:
    """Wait for this request's turn in queue `key` and its service time (see fifo)."""
    arrived = time.monotonic()
    done = max(arrived, _fifo_busy_until.get(key, 0.0)) + service_s
    _fifo_busy_until[key] = done
    await asyncio.sleep(max(0.0, done - time.monotonic()))


class _BatchServer:
    """The server behind one /batch/... path: batches of the waiting requests, one at a time,
    on an exact timeline (a late wake-up does not delay the next batch)."""

    def __init__(self, fixed_s: float, per_request_s: float, max_batch: int) -> None:
        self.fixed_s, self.per_request_s, self.max_batch = fixed_s, per_request_s, max_batch
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.task: asyncio.Task | None = None  # held: the loop keeps only weak references

    async def serve(self) -> None:
        future = asyncio.get_running_loop().create_future()
        self.waiting.append(future)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run())
        await future

    async def _run(self) -> None:
        done_s = time.monotonic()
        while self.waiting:
            size = min(self.max_batch, len(self.waiting))
            batch = [self.waiting.popleft() for _ in range(size)]
            done_s = max(done_s, time.monotonic()) + self.fixed_s + self.per_request_s * size
            await asyncio.sleep(max(0.0, done_s - time.monotonic()))
            for future in batch:
                if not future.done():  # not a request whose client went away
                    future.set_result(None)


_batch_servers: dict[str, _BatchServer] = {}


async def batch(request: web.Request) -> web.Response:
    await request.read()
    server = _batch_servers.get(request.path)
    if server is None:
        info = request.match_info
        server = _BatchServer(
            int(info["ms"]) / 1000, float(info["per_ms"]) / 1000, int(info["max"])
        )  # fmt: skip
        _batch_servers[request.path] = server
    await server.serve()
    return _reply()


async def metrics(request: web.Request) -> web.Response:
    if not MODEL_SERVER["metrics"]:
        return _reply(404)
    text = (
        "# TYPE bentoml_service_request_total counter\n"
        f'bentoml_service_request_total{{endpoint="/classify_batch"}} {MODEL_SERVER["requests"]}\n'
    )
    return web.Response(text=text, content_type="text/plain")


async def by_text(request: web.Request) -> web.Response:
    body = await request.json()
    text = body["texts"][0] if "texts" in body else body.get("text", "")
    kind, _, value = str(text).partition(":")
    if kind == "status":
        return _reply(int(value))
    if kind == "sleep":
        await asyncio.sleep(int(value) / 1000)
    return _reply()


class RawOkProtocol(asyncio.Protocol):
    """Keep-alive HTTP/1.1 that answers each request with the same 200, parsing only the
    header end and Content-Length."""

    BODY = b'{"status": 200}'
    RESPONSE = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                length = int(head[at + 15 : line_end if line_end >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(self.RESPONSE)


async def _serve_raw(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(RawOkProtocol, host, port)
    async with server:
        await server.serve_forever()


def require_header(name: str, value: str) -> object:
    """Middleware: 401 for a request without header `name` equal to `value`."""

    @web.middleware
    async def check(request: web.Request, handler: object) -> web.StreamResponse:
        if request.headers.get(name) != value:
            await request.read()
            return _reply(401)
        return await handler(request)  # type: ignore[operator]

    return check


def make_app(required_header: tuple[str, str] | None = None) -> web.Application:
    app = web.Application(middlewares=[require_header(*required_header)] if required_header else [])
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/classify_batch", classify_batch)
    app.router.add_route("*", "/delay/{ms}", delay)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/stall/{start_ms}/{len_ms}/{ms}", stall)
    app.router.add_route("*", "/fifo/{ms}", fifo)
    app.router.add_route("*", "/batch/{ms}/{per_ms}/{max}", batch)
    app.router.add_route("*", "/readyz", ok)
    app.router.add_route("*", "/livez", ok)
    app.router.add_route("*", "/by-text", by_text)
    app.router.add_route("GET", "/metrics", metrics)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpus", default="", help="cores to pin the server to, e.g. 0 or 0,2")
    parser.add_argument("--raw", action="store_true", help="minimal server: 200 to everything")
    parser.add_argument(
        "--classify-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="/classify_batch: one request at a time, MS milliseconds each (0: at once)",
    )
    parser.add_argument("--metrics", action="store_true", help="serve /metrics (Prometheus)")
    parser.add_argument(
        "--require-header",
        metavar="'NAME: VALUE'",
        help="answer 401 to every request without this header",
    )
    args = parser.parse_args(argv)
    MODEL_SERVER.update(service_s=args.classify_ms / 1000.0, metrics=args.metrics)
    required = None
    if args.require_header:
        name, _, value = args.require_header.partition(":")
        required = (name.strip(), value.strip())
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    if args.raw:
        asyncio.run(_serve_raw(args.host, args.port))
        return
    web.run_app(make_app(required), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
