#!/usr/bin/env python3
"""Stock python-socketio clients, driven by the end-to-end tests in tests/js.

Runs several `socketio.AsyncClient`s in one process. Each keeps the library's default
reconnection settings, and its only application code is the usual pattern "join my
project on every `connect`": no client here ever calls `connect()` again by itself, so
whether it comes back after a server event is up to the library.

Usage: stock_client.py CONFIG_JSON
  {"url": "http://127.0.0.1:PORT",
   "clients": [{"token": "...", "project": "p0", "transports": ["websocket"] | null}, ...]}
  (`transports` null or absent: the library's default, long-polling then websocket.)

Reports on stdout, one JSON object per line, `t` in Unix milliseconds, `c` the client's
index in "clients":
  {"c": 0, "t": ..., "ev": "connect"}
  {"c": 0, "t": ..., "ev": "joined", "answer": "You have joined p0!"}
  {"c": 0, "t": ..., "ev": "disconnect", "reason": "transport error"}
  {"c": 0, "t": ..., "ev": "connect_error", "message": "..."}
  {"c": 0, "t": ..., "ev": "event", "name": "update", "args": [...]}   (any other event)
  {"t": ..., "ev": "started"}   once every client's first connection attempt is under way
Runs until it is killed.
"""

import asyncio
import json
import sys
import time

import aiohttp
import socketio


def report(**fields):
    fields["t"] = int(time.time() * 1000)
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def stock_client(index, spec):
    """One client; returns (sio, connect coroutine factory)."""
    # The default aiohttp cookie jar ignores cookies set by an IP address (the tests'
    # load balancer is 127.0.0.1), which would lose the load balancer's affinity cookie
    # that long-polling needs. A jar that accepts them is what a client gets by default
    # against a host name: a connection setting, not application code.
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    sio = socketio.AsyncClient(http_session=session)
    project = spec["project"]

    @sio.event
    async def connect():
        report(c=index, ev="connect")
        await sio.emit(
            "join_project",
            {"projectId": project},
            callback=lambda answer=None: report(c=index, ev="joined", answer=answer),
        )

    @sio.event
    async def disconnect(reason=None):
        report(c=index, ev="disconnect", reason=reason)

    @sio.event
    async def connect_error(data=None):
        report(c=index, ev="connect_error", message=data if isinstance(data, (str, dict)) else str(data))

    @sio.on("*")
    async def any_event(name, *args):
        report(c=index, ev="event", name=name, args=list(args))

    async def start():
        await sio.connect(
            spec["url"],
            auth={"token": spec["token"]},
            transports=spec.get("transports") or None,
            retry=True,
            wait_timeout=10,
        )

    return sio, start


async def main():
    config = json.loads(sys.argv[1])
    clients = [stock_client(i, {"url": config["url"], **c}) for i, c in enumerate(config["clients"])]
    tasks = [asyncio.create_task(start()) for _, start in clients]
    report(ev="started")
    for task in tasks:
        try:
            await task
        except Exception as e:  # the first attempt failed and retry gave up: report it
            report(ev="error", message=f"{type(e).__name__}: {e}")
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
