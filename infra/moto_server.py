"""Serve moto's AWS mock one request at a time, on loopback.

moto's own threaded server is not atomic: concurrent conditional writes to one DynamoDB item
can both succeed, and concurrent TransactWriteItems can fail with 500s. DynamoDB itself
serialises writes to an item, so this launcher puts every request behind one lock: the
concurrency tests then hold the project to DynamoDB's real guarantee.

The lock is first come, first served (`FifoLock`), and only moto's own work happens under it:
each request's body is read from the socket before the request queues for the lock, and the
answer, built whole inside it, is written to the socket after it. Two patches of moto
(`cheap_transaction_rollback`, `partition_queries`) make its time per DynamoDB call depend on
what the call reads and writes, not on the size of the table; both keep moto's answers.
Nothing slow is left to a service's first call either, which would hold the lock while every
other client's calls time out: the CBOR models are loaded before the server answers, and the
stack's service apps are built beside its first requests (`warm`).

Usage: moto_server.py [--port N] [--request-log FILE] [--exit-on-stdin-eof]
Prints `READY <port>` on stdout once listening. With --exit-on-stdin-eof it exits when its
standard input closes, so a test process that dies takes its server with it.
"""

import argparse
import collections
import io
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


class FifoLock:
    """A lock served first come, first served.

    `threading.Lock` is not fair: a thread that releases it and asks again (or a newcomer) can
    take it before a thread that has been waiting, again and again, which under load left some
    requests waiting seconds. Here each waiter queues behind those already waiting and the
    releasing thread hands the lock to the oldest of them directly.
    """

    def __init__(self):
        self._mutex = threading.Lock()
        self._waiters = collections.deque()
        self._held = False

    def acquire(self):
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        # Released by `release` once every earlier waiter has had its turn: the lock is then
        # this thread's (handed over, never free in between).
        turn.acquire()

    def release(self):
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def read_body(environ):
    """Reads the whole request body from the socket and gives the app an in-memory copy.

    Done before taking the lock, so a slow upload delays only its own request.
    """
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if environ.get("wsgi.input_terminated"):
        # Chunked: werkzeug's dechunking stream ends with the body.
        body = stream.read()
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        parts, left = [], length
        while left > 0:
            part = stream.read(left)
            if not part:
                break
            parts.append(part)
            left -= len(part)
        body = b"".join(parts)
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def locked(app, lock, request_log):
    log_lock = threading.Lock()

    def serve(environ, start_response):
        if environ.get("PATH_INFO") == "/_lumi/sent-emails":
            with lock:
                body = json.dumps(sent_emails(), default=str).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        arrived = time.monotonic()
        body_in = read_body(environ)
        read = time.monotonic()
        with lock:
            started = time.monotonic()
            # moto's state is read only here: the whole answer is built inside the lock; the
            # server writes it to the socket after `serve` returns, outside it.
            chunks = app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close:
                    close()
            done = time.monotonic()
        if request_log is not None:
            # One line per AWS call, for benchmarks that count requests and see where the time
            # went: reading the body, waiting for the lock, moto's own handling (milliseconds).
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            auth = environ.get("HTTP_AUTHORIZATION", "")
            service = ""
            if "Credential=" in auth:
                parts = auth.split("Credential=", 1)[1].split("/")
                service = parts[3] if len(parts) > 3 else ""
            entry = {
                "t": time.time(),
                "service": service,
                "target": target,
                "method": environ.get("REQUEST_METHOD"),
                "path": environ.get("PATH_INFO"),
                "read_ms": round((read - arrived) * 1000, 3),
                "wait_ms": round((started - read) * 1000, 3),
                "handle_ms": round((done - started) * 1000, 3),
            }
            if target.startswith("DynamoDB_") and body_in:
                # Which table and index: a query of an index is a scan of the table in moto.
                try:
                    request = json.loads(body_in)
                    entry["table"] = request.get("TableName")
                    entry["index"] = request.get("IndexName")
                except (ValueError, AttributeError):
                    pass
            line = json.dumps(entry)
            with log_lock:
                request_log.write(line + "\n")
                request_log.flush()
        return [body]

    return serve


def modules_listed_once():
    """Makes moto list its own service modules once, not on every request.

    moto's dispatcher asks whether a request's host names a moto module by walking moto's
    package directory (a listdir and a stat per module, about 180) on every call. For S3 that
    was 40% of moto's time on a GetObject, under the lock. The package does not change while
    the server runs, so the list is read once.
    """
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def cheap_transaction_rollback():
    """Makes moto's TransactWriteItems cost what it writes, not the size of its tables.

    moto 5 keeps a transaction atomic by deep-copying every table the transaction names, once
    per part, before writing, and putting the copies back if a part fails. The cost grows with
    everything ever written: under a shop's load (orders, ledger, audit and idempotency items
    pile up in one table) a checkout's transaction took tens of milliseconds of moto's time
    under the lock, and every other request queued behind it. Here the transaction saves only
    the items it names (a copy of each, or their absence) and puts those back when moto raises,
    which is the same all-or-nothing: moto's own rollback, left in place, puts back the very
    same table objects. Safe because moto runs one request at a time (the lock), so nothing
    else reads or writes the tables while a transaction is in flight, and nothing else reads
    the module's `copy` meanwhile.
    """
    import copy

    import moto.dynamodb.models as dynamodb
    from moto.dynamodb.models.table import Table

    original = dynamodb.DynamoDBBackend.transact_write_items

    class TablesNotCopied:
        @staticmethod
        def deepcopy(value, memo=None):
            return value if isinstance(value, Table) else copy.deepcopy(value, memo)

    def named_items(backend, transact_items):
        """(table, hash key, range key, a copy of the item or None) for each part."""
        saved = []
        for part in transact_items:
            try:
                op_type, op = next(iter(part.items()))
                table = backend.get_table(op["TableName"])
                if op_type == "Put":
                    attrs = op["Item"]
                    keys = {table.hash_key_attr: attrs[table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        keys[table.range_key_attr] = attrs[table.range_key_attr]
                else:
                    keys = op["Key"]
                hash_key, range_key = backend.get_keys_value(table, keys)
                before = table.get_item(hash_key, range_key)
            except Exception:
                # A malformed part: moto refuses it without writing it.
                continue
            saved.append((table, hash_key, range_key, copy.deepcopy(before)))
        return saved

    def put_back(saved):
        for table, hash_key, range_key, before in reversed(saved):
            if range_key is not None:
                if before is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = before
            elif before is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = before

    def transact_write_items(self, transact_items):
        saved = named_items(self, transact_items)
        dynamodb.copy = TablesNotCopied
        try:
            return original(self, transact_items)
        except BaseException:
            put_back(saved)
            raise
        finally:
            dynamodb.copy = copy

    dynamodb.DynamoDBBackend.transact_write_items = transact_write_items


def partition_queries():
    """Makes moto's Query read the partition it asks for, not the whole table.

    moto 5 answers every Query by sorting every item of the table and filtering them: a query
    of a global secondary index (the catalog, a customer's orders, a variant's reservations)
    and even of one partition of the table cost time in proportion to everything ever written,
    all of it under the lock. Here a Query of the table sees only the items of its partition,
    and a Query of a GSI only the items that were ever written with its partition key value
    (kept per table as items are written; moto still checks every condition, so an item
    that has since changed or gone is left out as before). Everything else, Scan included, is
    moto's own code.
    """
    import moto.dynamodb.models as dynamodb
    from moto.dynamodb.models.table import GlobalSecondaryIndex, Table

    # Key attributes are strings, numbers or binary: other values are never looked up.
    KEY_TYPES = ("S", "N", "B")
    original_query = Table.query
    original_put = Table.put_item
    original_update = dynamodb.DynamoDBBackend.update_item

    def by_value(table, attr):
        """{value of `attr`: {(hash key, range key)}}, built on first use, then kept."""
        maps = table.__dict__.setdefault("_lumi_by_value", {})
        if attr not in maps:
            values = {}
            for item in Table.all_items(table):
                value = item.attrs.get(attr)
                if value is not None and value.type in KEY_TYPES:
                    values.setdefault(value, set()).add((item.hash_key, item.range_key))
            maps[attr] = values
        return maps[attr]

    def note(table, item):
        """An item was written: it may now be found by its current values."""
        if item is None:
            return
        for attr, values in table.__dict__.get("_lumi_by_value", {}).items():
            value = item.attrs.get(attr)
            if value is not None and value.type in KEY_TYPES:
                values.setdefault(value, set()).add((item.hash_key, item.range_key))

    def lookup(table, hash_key, range_key):
        partition = table.items.get(hash_key)
        if partition is None:
            return None
        if table.range_key_attr:
            return partition.get(range_key)
        return partition

    def in_order(items):
        return sorted(
            items,
            key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key,
        )

    def candidates(table, hash_key, index_name, hash_key_conditions):
        if not index_name:
            if hash_key is None:
                return None
            partition = table.items.get(hash_key)
            if partition is None:
                return []
            return list(partition.values()) if table.range_key_attr else [partition]
        index = next((i for i in table.all_indexes() if i.name == index_name), None)
        if not isinstance(index, GlobalSecondaryIndex):
            return None
        hash_attrs = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
        conditions = hash_key_conditions or []
        if (
            len(hash_attrs) != 1
            or len(conditions) != 1
            or conditions[0][0] != hash_attrs[0]
            or conditions[0][1].type not in KEY_TYPES
        ):
            return None
        keys = by_value(table, hash_attrs[0]).get(conditions[0][1], ())
        found = (lookup(table, h, r) for h, r in keys)
        return [item for item in found if item is not None]

    def query(self, hash_key, *args, **kwargs):
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        items = candidates(self, hash_key, index_name, kwargs.get("hash_key_conditions"))
        if items is None:
            return original_query(self, hash_key, *args, **kwargs)
        items = in_order(items)
        # moto's query reads `self.all_items()`: for this call, only the candidates.
        self.all_items = lambda: list(items)
        try:
            return original_query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    def put_item(self, *args, **kwargs):
        item = original_put(self, *args, **kwargs)
        note(self, item)
        return item

    def update_item(self, table_name, key, *args, **kwargs):
        try:
            return original_update(self, table_name, key, *args, **kwargs)
        finally:
            # Even a refused update may have changed the item in place: note it as it is.
            try:
                table = self.get_table(table_name)
                note(table, table.get_item(*self.get_keys_value(table, key)))
            except Exception:
                pass

    Table.query = query
    Table.put_item = put_item
    dynamodb.DynamoDBBackend.update_item = update_item


# The services the Rust SDK calls in Smithy RPC v2 CBOR (see `rpc_v2_cbor`), by botocore name.
CBOR_SERVICES = ("cloudwatch",)

# The moto services the stack uses (one per `aws-sdk-*` crate of the workspace; SES v2 is served
# with SES's backend), whose apps `warm` builds once the server is up.
STACK_SERVICES = ("dynamodb", "s3", "sqs", "secretsmanager", "sesv2", "ses", "cloudwatch")


def warm(dispatcher):
    """Builds each of the stack's moto service apps (and so imports its modules and creates its
    us-east-1 backend) beside the first requests, outside the lock.

    moto does that on a service's first request, inside the lock: 0.1 to 0.3 s a service on a
    warm disk, more on a fresh machine, while every other client waits (CloudWatch's first
    call comes in the middle of a test, from the metrics endpoint). Building an app changes no
    state a request reads, and moto creates backends under a lock of its own; an app built here
    is kept unless a request built one first.
    """
    for service in STACK_SERVICES:
        try:
            app = dispatcher.create_app(service)
        except Exception as error:  # a service this moto does not know: its first call says so
            print(f"moto_server.py: warming {service}: {error}", file=sys.stderr)
            continue
        with dispatcher.lock:
            dispatcher.app_instances.setdefault(service, app)


def rpc_v2_cbor(app):
    """Serves AWS's Smithy RPC v2 CBOR protocol, which moto does not speak, through moto's JSON one.

    The Rust SDK calls CloudWatch in CBOR (`POST /service/<service>/operation/<operation>`,
    `smithy-protocol: rpc-v2-cbor`); moto answers CloudWatch in the JSON protocol too. Such a
    request is decoded with botocore's CBOR parser against the operation's input shape, sent
    to moto as JSON (`X-Amz-Target: <service>.<operation>`), and moto's answer is encoded back
    to CBOR with botocore's serializer against the output shape (timestamps as CBOR tag 1),
    errors as `{"__type", "message"}`. Only the services whose model lists both protocols
    can be served this way; that is CloudWatch here.
    """
    import datetime

    import botocore.session
    from botocore.parsers import JSONParser, RpcV2CBORParser
    from botocore.serialize import RpcV2CBORSerializer

    # Loaded by name, once, before the server answers: finding a model by its target prefix
    # among all of botocore's loads some 80 models (0.7 s warm, seconds on a cold disk), and
    # done on the first CBOR call it held moto's lock that long, so that every other client's
    # calls timed out.
    session = botocore.session.get_session()
    models = {}
    for name in CBOR_SERVICES:
        model = session.get_service_model(name)
        models[model.metadata["targetPrefix"]] = model

    def operation_model(service_id, operation):
        model = models.get(service_id)
        if model is None or operation not in model.operation_names:
            return None
        return model.operation_model(operation)

    def plain(value):
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    def serve(environ, start_response):
        path = environ.get("PATH_INFO", "")
        parts = path.strip("/").split("/")
        if not (
            environ.get("HTTP_SMITHY_PROTOCOL") == "rpc-v2-cbor"
            and len(parts) == 4
            and parts[0] == "service"
            and parts[2] == "operation"
        ):
            return app(environ, start_response)
        service_id, operation = parts[1], parts[3]
        model = operation_model(service_id, operation)
        body = environ["wsgi.input"].read()
        if model is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"no CBOR service {service_id}".encode()]
        params = {}
        if body:
            parser = RpcV2CBORParser()
            raw = parser._initial_body_parse(body)
            params = parser._parse_shape(model.input_shape, raw) if model.input_shape else {}
        json_body = json.dumps(plain(params)).encode()
        environ = dict(environ)
        environ["PATH_INFO"] = "/"
        environ["CONTENT_TYPE"] = "application/x-amz-json-1.0"
        environ["CONTENT_LENGTH"] = str(len(json_body))
        environ["HTTP_X_AMZ_TARGET"] = f"{service_id}.{operation}"
        environ["wsgi.input"] = io.BytesIO(json_body)
        answer = {}

        def capture(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers
            return lambda data: None

        chunks = app(environ, capture)
        try:
            out = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close:
                close()
        status = answer["status"]
        code = int(status.split(" ", 1)[0])
        serializer = RpcV2CBORSerializer()
        encoded = bytearray()
        if code >= 400:
            try:
                error = json.loads(out or b"{}")
            except ValueError:
                error = {}
            kind = str(error.get("__type") or error.get("code") or "InternalFailure")
            message = str(error.get("message") or error.get("Message") or "")
            encoded.append(0xA2)  # a map of two pairs
            for text in ("__type", kind, "message", message):
                serializer._serialize_type_string(encoded, text, None, None)
        elif model.output_shape is not None:
            parsed = JSONParser().parse(
                {"body": out, "headers": {}, "status_code": code}, model.output_shape
            )
            parsed.pop("ResponseMetadata", None)
            serializer._serialize_data_item(encoded, parsed, model.output_shape)
        else:
            encoded.append(0xA0)  # an empty map
        start_response(
            status,
            [
                ("Content-Type", "application/cbor"),
                ("smithy-protocol", "rpc-v2-cbor"),
                ("Content-Length", str(len(encoded))),
            ],
        )
        return [bytes(encoded)]

    return serve


def cloudwatch_namespaces_and_percentiles():
    """Two gaps of moto's CloudWatch GetMetricData that the Prometheus endpoint would see.

    moto compares a query's namespace only when the query names no dimensions, so a test
    stack's `Lumi/<prefix>` series would add up every other stack's with the same dimensions on
    a shared server: here each call sees only the metrics of its queries' namespace (the
    endpoint asks one namespace per call). And moto answers no percentile statistic (`p99`):
    here `pNN` is the nearest-rank percentile of the values put one by one.
    """
    import math

    import moto.cloudwatch.models as cloudwatch

    original_get = cloudwatch.CloudWatchBackend.get_metric_data
    original_stat = cloudwatch.Statistics.get_statistics_for_type

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        namespaces = {
            q["MetricStat"]["Metric"]["Namespace"] for q in queries if "MetricStat" in q
        }
        if len(namespaces) != 1:
            return original_get(self, queries, start_time, end_time, scan_by)
        namespace = namespaces.pop()
        everything = self.get_all_metrics
        self.get_all_metrics = lambda: [m for m in everything() if m.namespace == namespace]
        try:
            return original_get(self, queries, start_time, end_time, scan_by)
        finally:
            del self.get_all_metrics

    def get_statistics_for_type(self, stat):
        if len(stat) > 1 and stat[0] == "p":
            try:
                rank = float(stat[1:])
            except ValueError:
                return None
            values = sorted(self.metric_single_values_list)
            if not values or not 0 <= rank <= 100:
                return None
            return values[max(0, math.ceil(rank / 100 * len(values)) - 1)]
        return original_stat(self, stat)

    cloudwatch.CloudWatchBackend.get_metric_data = get_metric_data
    cloudwatch.Statistics.get_statistics_for_type = get_statistics_for_type


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
    modules_listed_once()
    cheap_transaction_rollback()
    partition_queries()
    cloudwatch_namespaces_and_percentiles()
    dispatcher = DomainDispatcherApplication(create_backend_app)
    app = rpc_v2_cbor(dispatcher)
    request_log = open(args.request_log, "a") if args.request_log else None
    server = make_server(
        args.host, args.port, locked(app, FifoLock(), request_log), threaded=True
    )
    print(f"READY {server.server_port}", flush=True)
    threading.Thread(target=warm, args=(dispatcher,), daemon=True).start()

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
