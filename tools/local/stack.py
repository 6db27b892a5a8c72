"""`make local`: the whole pipeline offline, in the foreground, until Ctrl-C or SIGTERM.

moto (a child process on loopback, and a second one holding the processor's own tables) stands in for AWS with the
resources infra/spec.py declares and the receive count and TTLs cdk.json sets; the local gateway serves
POST /webhooks/klikit and hands each request to one of the receiver's instances (processes, started on demand, up
to --receivers); pollers feed the processor's instances from the queue, up to its maximum concurrency.

Stopping (Ctrl-C, SIGTERM) goes in order: stop accepting requests and polling, let the invocations in flight
finish (bounded by the functions' timeouts), stop the instances, then moto. No child outlives the stack, even one
killed with -9: each child watches a pipe or socket from the stack and exits when it closes.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

from infra import lambda_shapes, spec
from infra.config import StackConfig
from klikit import observability
from klikit.formats import iso_z
from tools.fake_klikit import FakeKlikitProcess
from tools.local import config as local_config
from tools.local import moto_server
from tools.local.console import Console
from tools.local.instances import FunctionConfig, InstancePool
from tools.local.resources import LOCAL_REGION, LocalResources, create_resources, table_name
from tools.local.runtime import FunctionLog
from tools.local.state import (
    DEFAULT_PORT,
    FUNCTIONS,
    LOCAL_DEFAULT_SECRET,
    PROCESSOR,
    RECEIVER,
    SECRET_ENV,
    StackState,
    default_state_dir,
    keep_previous_logs,
    log_file,
    read_state,
    remove_state,
    stack_dir,
    webhook_url,
)

RECEIVER_TIMEOUT_SECONDS = spec.RECEIVER_TIMEOUT_SECONDS  # the receiver function's timeout in AWS
DEFAULT_VISIBILITY_TIMEOUT = 3  # seconds; short so that retries and the move to the DLQ happen while you watch
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}
# Receiver instances at most: enough for a burst of concurrent deliveries, few enough for the machine's memory
# (~60 MB each) and cores. Lambda's own limit is the account's (1,000 by default).
DEFAULT_RECEIVERS = max(4, 4 * (os.cpu_count() or 1))
# In AWS the two functions never share a CPU; here they do, so the path klikit waits on gets it first and the queue
# absorbs the processor's share: the processor's instances and its tables' moto run on the CPU the acks leave
# (nice 19; measured on the end-to-end benchmark: at nice 10, p99 ack 335 ms at 50/s, at nice 19, 241 ms).
PROCESSOR_NICE = 19
RESOURCE_PREFIX = "klikit-local"
PROCESSOR_TABLES = (spec.ORDERS_TABLE, spec.EFFECTS_TABLE)  # written by the processor (and the reconciler) only


class StartError(Exception):
    """The stack could not start; the message says what to do."""


@dataclass(frozen=True)
class LocalOptions:
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    moto_port: int = 0  # 0: any free port
    state_dir: Path | None = None
    secrets: tuple[str, ...] = ()
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    max_receive_count: int | None = None  # None: cdk.json's dlq_max_receive_count
    receivers: int | None = None  # None: DEFAULT_RECEIVERS
    verbose: bool = False
    instance_module: str | None = None  # what each instance runs; None: tools/local/instance.py


def choose_secrets(options: LocalOptions) -> tuple[list[str], str]:
    """(secrets, where they came from)."""
    if options.secrets:
        return list(options.secrets), "--secret"
    if os.environ.get(SECRET_ENV):
        return [os.environ[SECRET_ENV]], f"from {SECRET_ENV}"
    return [LOCAL_DEFAULT_SECRET], f"local default; set {SECRET_ENV} to use another"


def _point_boto3_at(endpoint: str) -> None:
    # boto3 honours AWS_ENDPOINT_URL for every client, the handlers' included; the credentials are dummies.
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": LOCAL_REGION,
            "AWS_REGION": LOCAL_REGION,
            **LOCAL_CREDENTIALS,
        }
    )


def processor_concurrency(stack_config: StackConfig) -> int:
    """The SQS event source's maximum concurrency (cdk.json `processor_max_concurrency`, infra/config.py)."""
    return stack_config.processor_max_concurrency


def _functions_env(resources: LocalResources, stack_config: StackConfig) -> dict[str, dict[str, str]]:
    """Each function's environment as the stack sets it (infra/lambda_shapes.py), with local logging."""
    ttl_days, log_level = stack_config.idempotency_ttl_days, stack_config.log_level
    local = {"POWERTOOLS_DEV": "false"}
    namespace = observability.METRICS_NAMESPACE
    return {
        RECEIVER: {
            **lambda_shapes.powertools_environment(observability.RECEIVER_SERVICE, namespace, log_level),
            **resources.receiver_env(ttl_days),
            **local,
        },
        PROCESSOR: {
            **lambda_shapes.powertools_environment(observability.PROCESSOR_SERVICE, namespace, log_level),
            **resources.processor_env(ttl_days),
            **local,
            # names its AWS calls in the User-Agent, so the local moto serves the receiver's first (moto_server.py)
            "AWS_SDK_UA_APP_ID": moto_server.PROCESSOR_APP_ID,
        },
    }


def send_command(port: int, state_dir: Path) -> str:
    command = "./klikit send created"
    if port != DEFAULT_PORT:
        command += f" --port {port}"
    if state_dir.resolve() != default_state_dir().resolve():
        command += f" --state-dir {state_dir}"
    return command


def reconcile_command(port: int, state_dir: Path) -> str:
    return send_command(port, state_dir).replace("send created", "reconcile --since 1h")


def _banner(
    options: LocalOptions,
    state: StackState,
    secrets: list[str],
    secret_source: str,
    state_dir: Path,
    pools: tuple[InstancePool, InstancePool],
) -> str:
    steps = "; the functions' full JSON logs follow each" if options.verbose else " (--verbose adds the full JSON logs)"
    receiver, processor = (pool.function for pool in pools)
    return "\n".join(
        [
            "",
            "klikit local stack is ready: the real receiver and processor, with moto playing AWS.",
            f"  webhook URL   POST {state.webhook_url}",
            f"  secret        {secrets[0]}   ({secret_source})",
            f"  send one      {send_command(options.port, state_dir)}",
            f"  instances     receiver: up to {receiver.concurrency} processes (--receivers), each started on its"
            f" first request; processor: up to {processor.concurrency} (processor_max_concurrency), one batch each",
            f"  moto          {state.moto_endpoint}   (state and logs: {state.directory})",
            f"  klikit API    {state.klikit_api_url}   (fake; reconcile: {reconcile_command(options.port, state_dir)})",
            f"  retries       a failed record is retried after {options.visibility_timeout} s,"
            f" and moves to the DLQ after {state.max_receive_count} receives",
            f"One line per delivery step below{steps}. Ctrl-C stops.",
            "",
        ]
    )


def run(options: LocalOptions) -> int:
    """Start everything, block until SIGINT/SIGTERM, stop everything in order. StartError when it cannot start."""
    from tools.local.gateway import LocalGateway
    from tools.local.moto_process import MotoProcess
    from tools.local.worker import QueueWorker

    stack_config = local_config.stack_config()  # a bad cdk.json value stops here, before anything starts
    receivers = options.receivers or DEFAULT_RECEIVERS
    if receivers < 1:
        raise StartError(f"--receivers must be at least 1 (got {receivers})")
    # The gateway and the pollers share this process and hand work to the instances: with the default 5 ms GIL
    # switch interval a reply waits behind a poller's CPU-bound moments (measured on the end-to-end benchmark).
    sys.setswitchinterval(0.001)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())

    state_dir = options.state_dir or default_state_dir()
    running = read_state(state_dir, options.port)
    if running is not None:
        raise StartError(
            f"a local stack already runs on port {options.port} (pid {running.pid}): use it, stop it with Ctrl-C, "
            "or start another one with --port"
        )
    directory = stack_dir(state_dir, options.port)
    directory.mkdir(parents=True, exist_ok=True)
    max_receive_count = options.max_receive_count or stack_config.dlq_max_receive_count
    secrets, secret_source = choose_secrets(options)

    lock = threading.Lock()
    console = Console(sys.stdout, lock)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log would drown the step lines

    try:
        gateway = LocalGateway((options.host, options.port), console)
    except OSError as exc:
        raise StartError(f"port {options.port} on {options.host} is taken ({exc.strerror}): pass --port") from None
    console.say("starting moto and creating the stack's resources (infra/spec.py, cdk.json) ...")
    # The processor's own tables in a moto of their own, at the processor's priority; the stack's moto (the one
    # endpoint everything uses) forwards the requests on them (moto_server.py: one moto is one GIL).
    tables = [f"--table={table_name(RESOURCE_PREFIX, table)}" for table in PROCESSOR_TABLES]
    processor_tables = MotoProcess(options.host)
    moto = MotoProcess(options.host, options.moto_port, ("--tables-at", processor_tables.endpoint, *tables))
    processor_tables.options = ("--nice", str(PROCESSOR_NICE), "--other-tables-at", moto.endpoint, *tables)
    try:
        processor_tables.start()
        moto.start()
    except OSError as exc:
        processor_tables.stop()
        gateway.server_close()
        raise StartError(f"moto could not bind port {moto.port} ({exc.strerror}): pass --moto-port") from None
    except RuntimeError as exc:
        processor_tables.stop()
        gateway.server_close()
        raise StartError(f"{exc}: is moto[server] installed? run make venv") from None

    endpoint = moto.endpoint
    _point_boto3_at(endpoint)
    session = boto3.Session(region_name=LOCAL_REGION)
    klikit_api = FakeKlikitProcess(options.host)
    try:
        resources = create_resources(
            session,
            secrets,
            prefix=RESOURCE_PREFIX,
            max_receive_count=max_receive_count,
            visibility_timeout_seconds=options.visibility_timeout,
        )
        klikit_api.start()  # klikit's partner orders API, faked, for ./klikit reconcile (tools/fake_klikit.py)
    except BaseException:
        klikit_api.stop()
        moto.stop()
        processor_tables.stop()
        gateway.server_close()
        raise
    keep_previous_logs(directory)  # a fresh moto holds nothing older; the last run's logs stay for comparison
    env = _functions_env(resources, stack_config)
    env[PROCESSOR]["AWS_ENDPOINT_URL_DYNAMODB"] = processor_tables.endpoint  # its tables, without the detour
    logs = {
        function: FunctionLog(function, log_file(directory, function), sys.stdout, options.verbose, lock)
        for function in FUNCTIONS
    }
    receiver = InstancePool(
        FunctionConfig(
            "klikit-local-receiver",
            RECEIVER,
            spec.RECEIVER_HANDLER,
            RECEIVER_TIMEOUT_SECONDS,
            stack_config.receiver_memory_mb,
            receivers,
            env[RECEIVER],
        ),
        logs[RECEIVER],
        lambda detail: console.note("cold start", detail),
        options.instance_module,
    )
    processor = InstancePool(
        FunctionConfig(
            "klikit-local-processor",
            PROCESSOR,
            spec.PROCESSOR_HANDLER,
            stack_config.processor_timeout_seconds,
            stack_config.processor_memory_mb,
            processor_concurrency(stack_config),
            env[PROCESSOR],
            PROCESSOR_NICE,
        ),
        logs[PROCESSOR],
        lambda detail: console.note("cold start", detail),
        options.instance_module,
    )
    state: StackState | None = None
    worker: QueueWorker | None = None
    try:
        gateway.receiver = receiver
        sqs = session.client("sqs", config=Config(user_agent_extra=f"app/{moto_server.EVENT_SOURCE_APP_ID}"))
        worker = QueueWorker(
            sqs, resources.queue_url, processor, console, max_receive_count, stop, options.visibility_timeout
        )
        gateway.start()
        worker.start()
        state = StackState(
            port=options.port,
            pid=os.getpid(),
            moto_endpoint=endpoint,
            webhook_url=webhook_url(options.port, options.host),
            directory=str(directory),
            started_at=iso_z(),
            max_receive_count=max_receive_count,
            resources=resources,
            klikit_api_url=klikit_api.url,
        )
        state.write()
        console.say(_banner(options, state, secrets, secret_source, state_dir, (receiver, processor)))
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        if state is not None:
            remove_state(state)
        in_flight = gateway.stop_accepting()
        console.say(
            f"\nstopping: no new requests or polls; waiting for {in_flight} request(s) and the batches in flight ..."
        )
        gateway.wait_for_requests(RECEIVER_TIMEOUT_SECONDS + 1)
        if worker is not None:
            worker.join(stack_config.processor_timeout_seconds + 2)
        receiver.close()
        processor.close()
        moto.stop()
        processor_tables.stop()
        klikit_api.stop()
        for log in logs.values():
            log.close()
    console.say(f"stopped: nothing left running. The functions' logs stay in {directory} (and the run before's).")
    return 0
