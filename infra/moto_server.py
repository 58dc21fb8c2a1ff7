"""Serve moto's AWS mock one request at a time, on loopback.

moto's own threaded server is not atomic: concurrent conditional writes to one DynamoDB item
can both succeed, and concurrent TransactWriteItems can fail with 500s. DynamoDB itself
serialises writes to an item, so this launcher puts every request behind one lock: the
concurrency tests then hold the project to DynamoDB's real guarantee.

Usage: moto_server.py [--port N] [--request-log FILE] [--exit-on-stdin-eof]
Prints `READY <port>` on stdout once listening. With --exit-on-stdin-eof it exits when its
standard input closes, so a test process that dies takes its server with it.
"""

import argparse
import json
import logging
import sys
import threading
import time

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server


def sent_emails():
    """The emails the local SES accepted, for people and tests (`GET /_lumi/sent-emails`)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses import ses_backends

    emails = []
    for region, backend in ses_backends[DEFAULT_ACCOUNT_ID].items():
        for message in backend.sent_messages:
            emails.append(
                {
                    "region": region,
                    "source": getattr(message, "source", None),
                    "destinations": getattr(message, "destinations", None),
                    "subject": getattr(message, "subject", None),
                    "body": getattr(message, "body", None),
                }
            )
    return emails


def locked(app, lock, request_log):
    def serve(environ, start_response):
        if environ.get("PATH_INFO") == "/_lumi/sent-emails":
            with lock:
                body = json.dumps(sent_emails(), default=str).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        with lock:
            chunks = app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            if request_log is not None:
                # One line per AWS call, for benchmarks that count requests.
                target = environ.get("HTTP_X_AMZ_TARGET", "")
                auth = environ.get("HTTP_AUTHORIZATION", "")
                service = ""
                if "Credential=" in auth:
                    parts = auth.split("Credential=", 1)[1].split("/")
                    service = parts[3] if len(parts) > 3 else ""
                request_log.write(
                    json.dumps(
                        {
                            "t": time.time(),
                            "service": service,
                            "target": target,
                            "method": environ.get("REQUEST_METHOD"),
                            "path": environ.get("PATH_INFO"),
                        }
                    )
                    + "\n"
                )
                request_log.flush()
        return [body]

    return serve


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--request-log")
    parser.add_argument("--exit-on-stdin-eof", action="store_true")
    args = parser.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        sys.exit("moto_server.py serves on loopback only")

    # One access line per AWS call would drown the test output; errors still show.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    request_log = open(args.request_log, "a") if args.request_log else None
    server = make_server(
        args.host, args.port, locked(app, threading.Lock(), request_log), threaded=True
    )
    print(f"READY {server.server_port}", flush=True)

    if args.exit_on_stdin_eof:
        def watch_stdin():
            sys.stdin.read()
            server.shutdown()

        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
