"""The local stack's moto server: `python -m tools.local.moto_server -H HOST -p PORT`, started by moto_process.py.

moto's backends behind this stack's own HTTP front (moto_front.py: keep-alive, a short lane for the delivery path's
services), with what the local stack needs of them on a 2-core machine:

- It never outlives the stack: it reads its stdin, a pipe only the stack holds, and exits when the pipe closes.
- The path klikit waits on goes first. In AWS the receiver's calls never queue behind the processor's; here one
  Python process serves both, so a request from the processor's side (its instances and the SQS pollers, which
  name themselves in the User-Agent with `AWS_SDK_UA_APP_ID`, see `BACKGROUND_APPS`) waits, at most
  `BACKGROUND_WAIT_SECONDS`, until no other request is in flight.
- DynamoDB requests one at a time per table (`TableLocks`): DynamoDB applies a conditional write to an item
  atomically, moto's threaded server does not, and instances race on the same items (event ids, orders). One lock
  per table, not one for all: the receiver's and the processor's tables are different, so an ack never waits for a
  projection update (measured: the receiver's PutItem waited p50 25 / p99 116 ms behind the processor's).
- The processor's own tables can live in a second moto server, started by the stack at a lower CPU priority: the
  stack's moto forwards the requests on them there (`--tables-at URL --table NAME ...`), and that one forwards
  the requests on any other table back (`--other-tables-at URL --table NAME ...`), so the processor can talk to
  it directly (AWS_ENDPOINT_URL_DYNAMODB) and still reach any table. moto is one Python process, one
  GIL; at 50 deliveries/s the processor's projection updates alone needed most of a core, and every ack queued for
  the GIL behind them. In AWS a table is its own service; here it gets its own interpreter.
- moto's own overheads cut where they do not change an answer (`speed_up_moto`: quadratic
  update-expression checks, per-node class lookups, deep copies, re-parsing, queue-wide counts, per-request
  directory listings): moto's CPU per delivery on the end-to-end mix 101 -> 49 ms (docs/performance.md).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import functools
import http.client
import importlib
import json
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from tools.local import moto_front

# The SDK app ids (botocore's user_agent_appid, "app/<id>" in the User-Agent) of the processing side's clients.
PROCESSOR_APP_ID = "klikit-local-processor"
EVENT_SOURCE_APP_ID = "klikit-local-event-source"
BACKGROUND_APPS = (f"app/{PROCESSOR_APP_ID}", f"app/{EVENT_SOURCE_APP_ID}")
# A background request starts after this at the latest, however busy the receiver is: the queue drains meanwhile,
# slowly, and no processor invocation comes near its timeout.
BACKGROUND_WAIT_SECONDS = 0.2
DYNAMODB_TARGET = "DynamoDB_"
HOP_HEADERS = ("connection", "keep-alive", "transfer-encoding", "content-length", "server", "date")
CACHED_EXPRESSIONS = 1024  # distinct expression texts kept parsed: the functions send a handful of shapes


class Scheduler:
    """Background requests start when no urgent one (the receiver's, the CLI's) is in flight, or after a bound."""

    def __init__(self, background_wait: float = BACKGROUND_WAIT_SECONDS) -> None:
        self._background_wait = background_wait
        self._idle = threading.Condition()
        self._urgent_in_flight = 0
        self.dynamodb = TableLocks()

    @contextlib.contextmanager
    def request(self, background: bool) -> Iterator[None]:
        if background:
            with self._idle:
                self._idle.wait_for(lambda: self._urgent_in_flight == 0, timeout=self._background_wait)
            yield
            return
        with self._idle:
            self._urgent_in_flight += 1
        try:
            yield
        finally:
            with self._idle:
                self._urgent_in_flight -= 1
                if not self._urgent_in_flight:
                    self._idle.notify_all()


class TableLocks:
    """A request naming one table holds that table's lock; any other DynamoDB request (batches, transactions, table
    listings) waits for every table to be free and holds them all: a readers-writer lock over per-table locks."""

    def __init__(self) -> None:
        self._guard = threading.Condition()
        self._tables: dict[str, threading.Lock] = {}
        self._in_tables = 0  # requests holding (or waiting for) one table's lock
        self._all = False  # a request holds every table

    @contextlib.contextmanager
    def hold(self, table: str | None) -> Iterator[None]:
        if table is None:
            with self._guard:
                self._guard.wait_for(lambda: not self._all)
                self._all = True  # no new single-table request starts from here
                self._guard.wait_for(lambda: self._in_tables == 0)
            try:
                yield
            finally:
                with self._guard:
                    self._all = False
                    self._guard.notify_all()
            return
        with self._guard:
            self._guard.wait_for(lambda: not self._all)
            self._in_tables += 1
            lock = self._tables.setdefault(table, threading.Lock())
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._in_tables -= 1
                self._guard.notify_all()


def tables_named(environ: dict[str, Any]) -> frozenset[str]:
    """The tables a DynamoDB request names: its TableName, a batch's RequestItems, a transaction's items."""
    stream = environ["wsgi.input"]
    body = stream.read()
    stream.seek(0)
    try:
        request = json.loads(body)
    except ValueError:
        return frozenset()
    if not isinstance(request, dict):
        return frozenset()
    if isinstance(request.get("TableName"), str):
        return frozenset({request["TableName"]})
    if isinstance(request.get("RequestItems"), dict):
        return frozenset(name for name in request["RequestItems"] if isinstance(name, str))
    names = set()
    for item in request.get("TransactItems") or []:
        for operation in item.values() if isinstance(item, dict) else ():
            if isinstance(operation, dict) and isinstance(operation.get("TableName"), str):
                names.add(operation["TableName"])
    return frozenset(names)


class Forwarder:
    """Sends the DynamoDB requests on the tables another moto server holds to it, and returns its answers.

    Either `tables` are held at `endpoint` (the stack's moto: the processor's tables are elsewhere), or, with
    `listed_here`, every table but `tables` is (the processor's tables' moto: the rest is at the stack's).
    """

    def __init__(self, endpoint: str, tables: frozenset[str], listed_here: bool = False) -> None:
        address = urlsplit(endpoint)
        self.host, self.port = address.hostname or "127.0.0.1", address.port or 80
        self.tables = tables
        self.listed_here = listed_here
        self._connections = threading.local()  # one keep-alive connection per serving thread

    def sends(self, tables: frozenset[str]) -> bool | None:
        """Whether a request naming `tables` goes to the other server; None when it names tables of both."""
        if not tables:
            return self.listed_here  # table listings and the like: the stack's moto answers them
        listed = tables <= self.tables
        if not listed and tables & self.tables:
            return None
        return listed != self.listed_here

    def __call__(self, environ: dict[str, Any]) -> moto_front.Answer:
        body = environ["wsgi.input"].read()
        headers = {
            key[5:].replace("_", "-").title(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        for attempt in (1, 2):
            connection = getattr(self._connections, "connection", None)
            if connection is None:
                connection = self._connections.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                connection.request(environ["REQUEST_METHOD"], environ["RAW_URI"], body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._connections.connection = None
                if attempt == 2:
                    raise
                continue
            kept = [(name, value) for name, value in response.getheaders() if name.lower() not in HOP_HEADERS]
            return f"{response.status} {response.reason}", kept, answer
        raise AssertionError("unreachable")


def _mixed_tables(tables: frozenset[str]) -> moto_front.Answer:
    message = (
        "the local stack keeps the processor's tables in a moto server of their own; one request cannot name "
        f"them together with other tables: {', '.join(sorted(tables))}"
    )
    body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ValidationException", "message": message})
    return "400 Bad Request", [("Content-Type", "application/x-amz-json-1.0")], body.encode()


def is_background(environ: dict[str, Any]) -> bool:
    agent = environ.get("HTTP_USER_AGENT", "")
    return any(app in agent for app in BACKGROUND_APPS)


def scheduled(serve: moto_front.Serve, scheduler: Scheduler, forwarder: Forwarder | None = None) -> moto_front.Serve:
    """`serve`, with the processor's side's requests after the receiver's, DynamoDB's one at a time per table, and
    the requests on the tables `forwarder` holds sent to it."""

    def serve_in_turn(environ: dict[str, Any]) -> moto_front.Answer:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(DYNAMODB_TARGET):
            with scheduler.request(is_background(environ)):
                return serve(environ)
        tables = tables_named(environ)
        if forwarder is not None and (sends := forwarder.sends(tables)) is not False:
            return forwarder(environ) if sends else _mixed_tables(tables)
        with scheduler.request(is_background(environ)), scheduler.dynamodb.hold(_one(tables)):
            return serve(environ)

    return serve_in_turn


def _one(tables: frozenset[str]) -> str | None:
    return next(iter(tables)) if len(tables) == 1 else None


def speed_up_moto() -> None:
    """moto's UpdateItem validation, cheaper, with the same verdicts (moto 5's code paths, checked by the suites).

    - Each validation pass looks its node types up in a dict it rebuilds for every node, through isinstance on
      abstract classes: decided once per pass and node class.
    - Every UpdateItem parses its expression twice, and lexes its condition with a list of regexes per token:
      each distinct text is parsed (or lexed) once, then copied.
    - Each validation works on a deepcopy of the parsed tree: copied by `_copy_tree` instead.
    - The action-count and overlapping-path checks run on every sub-expression, each collecting every clause below
      it (quadratic in the number of SET actions: the processor's projection update has dozens). The root holds
      every clause, so when the root passes, every sub-expression passes too; only when it fails does the original
      walk run, so the error reported is moto's own.
    """
    # moto's parsing modules are untyped (`# type: ignore` at their top)
    ast_nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
    expressions: Any = importlib.import_module("moto.dynamodb.parsing.expressions")
    validators: Any = importlib.import_module("moto.dynamodb.parsing.validators")

    node_class = ast_nodes.Node
    node_types: dict[type, bool] = {}

    def handler_for(self: Any, kind: type) -> Callable[[Any], Any] | None:
        """The processing function of this pass for nodes of `kind` (moto's rule: the first matching class)."""
        handlers: dict[type, Callable[[Any], Any] | None] | None = self.__dict__.get("_klikit_handlers")
        if handlers is None:
            handlers = self.__dict__["_klikit_handlers"] = {}
        if kind not in handlers:
            matching = (handler for node_type, handler in self._processing_map().items() if issubclass(kind, node_type))
            handlers[kind] = next(matching, None)
        return handlers[kind]

    def traverse_node_recursively(self: Any, node: Any, child_id: int = -1) -> Any:
        kind = type(node)
        is_node = node_types.get(kind)
        if is_node is None:
            is_node = node_types[kind] = issubclass(kind, node_class)
        if not is_node:
            return node
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                self.pre_processing_of_child(node, i)
                self.traverse_node_recursively(child_node, i)
        handler = handler_for(self, kind)
        if handler is not None:
            node = handler(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
        return node

    traverser = ast_nodes.DepthFirstTraverser
    traverser.traverse_node_recursively = traverse_node_recursively

    parse = expressions.UpdateExpressionParser.make
    parsed = functools.lru_cache(maxsize=CACHED_EXPRESSIONS)(parse)  # what fails to parse raises again each time

    def make(cls: Any, expression: str) -> Any:
        return _copy_tree(parsed(expression), node_class)

    expressions.UpdateExpressionParser.make = classmethod(make)

    def root_first(check: str) -> Callable[[Any, Any], Any]:
        walk = traverser.traverse

        def traverse(self: Any, node: Any) -> Any:
            if isinstance(node, ast_nodes.UpdateExpression):
                try:
                    getattr(self, check)(node)
                except Exception:  # noqa: BLE001 - moto's own walk reports it, exactly as unpatched moto would
                    return walk(self, node)
                return node
            return walk(self, node)

        return traverse

    def validator_init(
        self: Any,
        expression: Any,
        expression_attribute_names: Any,
        expression_attribute_values: Any,
        item: Any,
        table: Any,
    ) -> None:
        self.expression_attribute_names = expression_attribute_names
        self.expression_attribute_values = expression_attribute_values
        self.item = item
        self.table = table
        self.processors = self.get_ast_processors()
        self.node_to_validate = _copy_tree(expression, ast_nodes.Node)

    validators.Validator.__init__ = validator_init

    conditions = importlib.import_module("moto.dynamodb.comparisons").ConditionExpressionParser
    lex = conditions._lex_condition_expression
    lexed: dict[str, tuple[Any, ...]] = {}

    def lex_once(self: Any) -> collections.deque[Any]:
        text = self.condition_expression
        nodes = lexed.get(text)
        if nodes is None:
            nodes = tuple(lex(self))  # immutable tokens; one that fails to lex raises again each time
            if len(lexed) < CACHED_EXPRESSIONS:
                lexed[text] = nodes
        return collections.deque(nodes)

    conditions._lex_condition_expression = lex_once
    validators.ActionCountValidator.traverse = root_first("verify_action_counts")
    validators.OverlappingPathsValidator.traverse = root_first("check_for_overlapping_paths")
    _speed_up_sqs()
    _speed_up_dispatch()


def _speed_up_dispatch() -> None:
    """What moto recomputes for every request from things that never change while it serves: computed once.

    - Which service a request's host names: moto lists its own package directory on disk, per request.
    - Which actions a service's response class has: inspect.getmembers over the class, per request.
    """
    backends: Any = importlib.import_module("moto.backends")
    responses: Any = importlib.import_module("moto.core.responses")
    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    responses.method_names_from_class = functools.cache(responses.method_names_from_class)


def _copy_tree(root: Any, node_class: type) -> Any:
    """What deepcopy(root) gives for a parsed expression (nodes with a type, children and parent), 3x faster.

    Each validation pass rewrites the tree it is given, so moto validates a copy; deepcopy's generic memo walk was
    ~15% of moto's CPU. Anything but a plain tree of nodes over text leaves is left to deepcopy.
    """
    seen: set[int] = set()

    def copy_node(node: Any, parent: Any) -> Any:
        if id(node) in seen or set(node.__dict__) != {"type", "children", "parent"}:
            raise _NotAPlainTree
        seen.add(id(node))
        twin: Any = object.__new__(type(node))
        twin.type, twin.parent = node.type, parent
        twin.children = None if node.children is None else [copy_child(child, twin) for child in node.children]
        return twin

    def copy_child(child: Any, parent: Any) -> Any:
        if isinstance(child, node_class):
            return copy_node(child, parent)
        if type(child) in (str, int, float, bool, type(None)):
            return child
        raise _NotAPlainTree

    if isinstance(root, node_class) and getattr(root, "parent", None) is None:
        try:
            return copy_node(root, None)
        except _NotAPlainTree:
            pass
    return copy.deepcopy(root)


class _NotAPlainTree(Exception):
    pass


def _speed_up_sqs() -> None:
    """moto's SQS, with a queue's cost per call independent of its backlog where moto's answer does not need it.

    - SendMessage (for ContentBasedDeduplication) and ReceiveMessage (for MessageRetentionPeriod, twice per message
      received) build the queue's whole attribute map, whose three approximate counts walk every message: on a
      backlog of thousands each send cost milliseconds. Those two reads skip the counts (they never read them);
      GetQueueAttributes still counts.
    - ReceiveMessage listed every visible message of the queue before taking the first ten: the visible ones are
      now walked lazily, in the same order, and the walk stops where moto's loop stops.
    - DeleteMessage walked every message per receipt handle (twice), and replaced the list without the lock
      SendMessage appends under, so a message sent meanwhile could be lost. Every receipt handle a message is given
      is indexed when moto gives it, so a delete finds its message at once, and removes it under that lock.
    With a backlog of a few thousand messages (the processor behind a burst), each batch received and deleted cost
    moto tens of milliseconds more than on an empty queue (docs/performance.md).
    """
    from moto.sqs import models
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    skip = threading.local()
    for count in (
        "approximate_number_of_messages",
        "approximate_number_of_messages_delayed",
        "approximate_number_of_messages_not_visible",
    ):
        counted = getattr(models.Queue, count).fget

        def approximate(self: Any, counted: Callable[[Any], int] = counted) -> int:
            return 0 if getattr(skip, "counts", False) else counted(self)

        setattr(models.Queue, count, property(approximate))

    def without_counts(method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            skip.counts = True
            try:
                return method(*args, **kwargs)
            finally:
                skip.counts = False

        return call

    backend = models.SQSBackend
    backend.send_message = without_counts(backend.send_message)  # type: ignore[method-assign]
    backend.is_message_valid_based_on_retention_period = without_counts(  # type: ignore[method-assign]
        backend.is_message_valid_based_on_retention_period
    )

    # every receipt handle a message has been given -> the message (weak: a deleted message is not kept alive)
    received: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
    mark_received = models.Message.mark_received

    def mark_received_indexed(self: Any, visibility_timeout: int | None = None) -> None:
        mark_received(self, visibility_timeout)
        received[self.receipt_handle] = self

    models.Message.mark_received = mark_received_indexed  # type: ignore[method-assign]

    def delete_message(self: Any, receipt_handle: str) -> None:
        with self._messages_lock:
            if receipt_handle in self.deleted_messages:
                return  # already deleted: moto answers success again, as SQS does
            message: Any = received.get(receipt_handle)  # None when never given: not in the list either
            try:
                self._messages.remove(message)  # moto's Message compares by identity
            except ValueError:
                raise ReceiptHandleIsInvalid() from None  # never given, or its message moved to a DLQ or purged
            self.pending_messages.discard(message)
            self.deleted_messages.update(message.all_receipt_handles)

    models.Queue.delete_message = delete_message  # type: ignore[method-assign]
    models.Queue.messages = property(lambda self: _VisibleMessages(self._messages))  # type: ignore[assignment]


class _VisibleMessages:
    """moto's `Queue.messages` (the visible, undelayed messages, oldest first), walked only as far as it is read."""

    def __init__(self, messages: list[Any]) -> None:
        self._messages = list(messages)  # a snapshot, as moto's list was: sends and deletes may happen meanwhile

    def __iter__(self) -> Iterator[Any]:
        return (message for message in self._messages if message.visible and not message.delayed)

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _watch_parent() -> None:
    sys.stdin.buffer.read()  # returns when the stack's end of the pipe closes: the stack is gone
    os._exit(0)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.local.moto_server")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    parser.add_argument("--nice", type=int, default=0, help="lower this server's CPU priority by this much")
    elsewhere = parser.add_mutually_exclusive_group()
    elsewhere.add_argument("--tables-at", metavar="URL", help="the moto server that holds the --table tables")
    elsewhere.add_argument("--other-tables-at", metavar="URL", help="the moto server that holds all other tables")
    parser.add_argument("--table", action="append", default=[], help="a DynamoDB table (see the two above)")
    args = parser.parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    forwarder = None
    if args.tables_at or args.other_tables_at:
        listed_here = bool(args.other_tables_at)
        forwarder = Forwarder(args.other_tables_at or args.tables_at, frozenset(args.table), listed_here)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as moto's own server: what moto puts in URLs it builds
    threading.Thread(target=_watch_parent, daemon=True).start()
    # 1 ms GIL switch interval: one CPU-bound request must not hold up the others for 5 ms slices (measured).
    sys.setswitchinterval(0.001)
    for stop in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop, lambda signum, frame: sys.exit(0))
    speed_up_moto()
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app = DomainDispatcherApplication(create_backend_app)
    serve = scheduled(moto_front.Dispatcher(app), Scheduler(), forwarder)
    moto_front.serve_forever(args.host, args.port, serve)


if __name__ == "__main__":
    main(sys.argv[1:])
