"""HAZMAT: ``gateway serve --workers N``, N processes forked from the booted master by gunicorn.

The master does the whole boot once (settings, Vault login and reads, store, Redis, LiteLLM's import, the app built
by the composition root), then gunicorn forks the workers from it (``preload_app``): each worker starts with a copy
of the master's memory, so the secrets reach it by ``fork`` alone, never through the environment, a file, a pipe or a
command line, and one single-use AppRole secret_id is one login for the whole host. A worker that dies is replaced by
a new fork of the same master, so it has the same secrets without another login. The master never enters the
lifespan: each worker enters it (LiteLLM's proxy startup, the ledger's threads, the invalidation listener) in its own
event loop, after the fork. What the master opened before the fork and a worker must not share is dropped in the
worker at once (:func:`post_fork`): the store's pooled connections (SQLAlchemy's ``dispose(close=False)``, the way
its documentation gives for a forked child). Redis clients reset their own pools when they see a new process id.

What the workers share is the host's: one listening socket (the master's), the rate-limit counters in Redis (so
``--workers > 1`` needs GATEWAY_REDIS_URL: in-memory counters would make every limit N times the configured one),
the store (the audit chain's head row and the ledger's rows serialise concurrent writers, across processes as across
replicas), a revocation epoch in shared memory (:class:`gateway.keys.epoch.SharedEpoch`) and the metrics directory
below.

This module imports neither prometheus_client nor the composition root: :func:`private_metrics_dir` must run before
either is imported (prometheus_client chooses multiprocess mode when it is first imported).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from gateway.boot.errors import BootError

log = logging.getLogger("gateway.boot")

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextlib.contextmanager
def private_metrics_dir() -> Iterator[Path]:
    """A private (0700) directory for prometheus_client's multiprocess mode, for the life of the master; removed when
    it ends. Each worker writes its counters there (one mmap file per process and metric type: metric names, label
    values that are route names and reason codes, and numbers; never a key, a digest or a secret)."""
    if "prometheus_client" in sys.modules:
        # Too late: the metrics were built in single-process mode and would not add up across workers.
        raise BootError("workers", "prometheus_client was imported before the metrics directory was set up")
    if os.environ.get(METRICS_DIR_ENV):
        raise BootError("workers", f"{METRICS_DIR_ENV} is set; the gateway creates its own metrics directory")
    folder = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))  # mode 0700, owned by this user
    owner = os.getpid()
    os.environ[METRICS_DIR_ENV] = str(folder)  # a path, not a secret: the workers inherit it with the fork
    log.info("metrics directory of the workers", extra={"outcome": str(folder)})
    try:
        yield folder
    finally:
        # A worker leaves through this block too (its exit unwinds the master's stack it was forked on): only the
        # master removes the directory, once every worker is gone.
        if os.getpid() == owner:
            os.environ.pop(METRICS_DIR_ENV, None)
            shutil.rmtree(folder, ignore_errors=True)


def run(app: Any, *, host: str, port: int, workers: int, graceful_seconds: int, log_level: str,
        after_fork: Callable[[], None]) -> int:
    """Serve ``app`` (already built) on ``host:port`` with ``workers`` forked workers until SIGTERM or SIGINT; returns
    the master's exit status. SIGTERM stops every worker accepting, lets in-flight requests (streams included)
    finish for up to ``graceful_seconds``, then exits."""
    from gunicorn.app.base import BaseApplication
    from gunicorn.arbiter import Arbiter
    from gunicorn.errors import HaltServer
    from gunicorn.glogging import Logger
    from prometheus_client import multiprocess
    from uvicorn_worker import UvicornWorker

    class GatewayWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker is untyped
        """uvicorn in a gunicorn worker, configured as the single-process server is (serve.serve)."""

        CONFIG_KWARGS: ClassVar[dict[str, Any]] = {"loop": "auto", "http": "auto", "lifespan": "on", "access_log": False,
                                                    "server_header": False, "proxy_headers": False, "ws": "none"}

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # Back to the gateway's logging (JSON, redaction): uvicorn-worker points uvicorn's loggers at gunicorn's.
            for name in ("uvicorn.error", "uvicorn.access"):
                logger = logging.getLogger(name)
                logger.handlers = []
                logger.propagate = True
            # In-flight requests finish before the worker's lifespan ends (uvicorn waits for them, as in serve.serve).
            self.config.timeout_graceful_shutdown = graceful_seconds

    class GatewayLogger(Logger):  # type: ignore[misc]  # gunicorn is untyped
        """gunicorn's own lines through the gateway's handlers (JSON, redaction); no access log."""

        def setup(self, cfg: Any) -> None:
            self.error_log.handlers = []
            self.error_log.propagate = True
            self.error_log.setLevel(self.LOG_LEVELS.get(cfg.loglevel.lower(), logging.INFO))
            self.access_log.disabled = True

    class GatewayArbiter(Arbiter):  # type: ignore[misc]  # gunicorn is untyped
        def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
            # Stopping the workers after one failed to start, gunicorn's SIGCHLD handler raises HaltServer again when
            # a second one fails meanwhile, out of the stop: stop again until every worker is gone (halt ends with
            # sys.exit).
            while True:
                try:
                    super().halt(reason=reason, exit_status=exit_status)
                except HaltServer as again:
                    reason, exit_status = again.reason, again.exit_status

        def handle_usr2(self) -> None:
            # Re-executing the master would boot again from Vault with a secret_id already spent: refused.
            log.warning("SIGUSR2 (binary upgrade) is not supported; restart the gateway instead")

    def post_fork(_server: Any, _worker: Any) -> None:
        after_fork()

    def child_exit(_server: Any, worker: Any) -> None:
        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # untyped in prometheus_client

    options = {
        "bind": [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"],
        "workers": workers,
        "worker_class": GatewayWorker,
        "preload_app": True,
        # uvicorn in each worker waits up to graceful_seconds for in-flight requests, then runs the lifespan's
        # shutdown (settling, the audit entry, LiteLLM's shutdown); gunicorn kills a worker still alive after this.
        "graceful_timeout": graceful_seconds + 10,
        # A worker that stops answering gunicorn's heartbeat this long (its event loop blocked, or LiteLLM's startup
        # hung) is killed and replaced.
        "timeout": 120,
        "keepalive": 5,
        "loglevel": log_level.lower(),
        "logger_class": GatewayLogger,
        "accesslog": None,
        "errorlog": "-",
        "proc_name": "gateway",
        "post_fork": post_fork,
        "child_exit": child_exit,
        "forwarded_allow_ips": "",
    }

    class Application(BaseApplication):  # type: ignore[misc]  # gunicorn is untyped
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return app

        def run(self) -> None:
            GatewayArbiter(self).run()

    master = os.getpid()
    try:
        Application().run()
    except SystemExit as exc:
        if os.getpid() != master:
            # A worker leaving: gunicorn forked it inside this call, so its exit unwinds through here. Its status
            # (3: it could not start) is for the master to read, never the master's own handling below.
            raise
        return int(exc.code) if isinstance(exc.code, int) else 1
    return 0
