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
  /readyz, /livez              200 (the probes of a BentoML server)
  /by-text                     behaviour chosen by the request's text ({"text": ...} or
                               {"texts": [...]}): "status:<code>", "sleep:<ms>", anything else 200

With --raw, a minimal HTTP/1.1 server instead (bodies by Content-Length only) that answers
every request 200 at once: many times faster than aiohttp, so that the capacity benchmark
measures the generator rather than the server.
"""

from __future__ import annotations

import argparse
import asyncio
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


async def classify_batch(request: web.Request) -> web.Response:
    body = await request.json()
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
    service_s = int(request.match_info["ms"]) / 1000
    arrived = time.monotonic()
    done = max(arrived, _fifo_busy_until.get(request.path, 0.0)) + service_s
    _fifo_busy_until[request.path] = done
    await asyncio.sleep(max(0.0, done - time.monotonic()))
    return _reply()


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


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/ok", ok)
    app.router.add_route("*", "/classify_batch", classify_batch)
    app.router.add_route("*", "/delay/{ms}", delay)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/stall/{start_ms}/{len_ms}/{ms}", stall)
    app.router.add_route("*", "/fifo/{ms}", fifo)
    app.router.add_route("*", "/readyz", ok)
    app.router.add_route("*", "/livez", ok)
    app.router.add_route("*", "/by-text", by_text)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cpus", default="", help="cores to pin the server to, e.g. 0 or 0,2")
    parser.add_argument("--raw", action="store_true", help="minimal server: 200 to everything")
    args = parser.parse_args(argv)
    if args.cpus:
        os.sched_setaffinity(0, {int(cpu) for cpu in args.cpus.split(",")})
    if args.raw:
        asyncio.run(_serve_raw(args.host, args.port))
        return
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
