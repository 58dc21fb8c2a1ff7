"""Serve localstripe (a stateful Stripe emulator, pinned in requirements.txt) on loopback.

`localstripe --port N` itself listens on every interface, has no way to pick a free port or
to say when it is ready, and writes its whole store to /tmp/localstripe.pickle after every
write (and reads it back at start): parallel test servers would share and race on that file.
This launcher serves the same application on 127.0.0.1 only, on the port asked (0: any free
one), with an empty store kept in memory, and prints `READY <port>` once it accepts requests.

Usage: localstripe_server.py [--port N] [--verbose] [--exit-on-stdin-eof]
With --exit-on-stdin-eof it exits when its standard input closes, so a test process that dies
takes its server with it. --verbose logs every request and every webhook delivery.
"""

import argparse
import asyncio
import logging
import socket
import sys

from aiohttp import web
from localstripe import resources, server


def keep_in_memory():
    # Nothing is read from or written to /tmp/localstripe.pickle.
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


async def serve(args):
    # localstripe logs requests and webhook deliveries on this logger.
    access = logging.getLogger("aiohttp.access")
    if args.verbose:
        access.setLevel(logging.INFO)
        access.addHandler(logging.StreamHandler())
    else:
        access.setLevel(logging.WARNING)

    runner = web.AppRunner(server.app, access_log=access if args.verbose else None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    site = web.SockSite(runner, sock)
    await site.start()
    print(f"READY {sock.getsockname()[1]}", flush=True)

    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    if args.exit_on_stdin_eof:
        def watch_stdin():
            sys.stdin.read()
            loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

        loop.run_in_executor(None, watch_stdin)
    try:
        await stop
    finally:
        await runner.cleanup()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if not args.host.startswith("127."):
        sys.exit("localstripe_server.py serves on IPv4 loopback only")
    keep_in_memory()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
