"""HAZMAT: ``gateway serve``, from the command line to :mod:`gateway.boot.serve`.

This module imports nothing that builds the gateway's metrics: with ``--workers`` above one, prometheus_client's
multiprocess directory is set up here first (:func:`gateway.boot.workers.private_metrics_dir`), and only then is the
boot imported.
"""

from __future__ import annotations

import contextlib
import sys

from gateway import logs
from gateway.boot.errors import BootError
from gateway.boot.settings import Settings, load_settings


def main(*, check: bool, workers: int | None = None) -> int:
    try:
        settings = load_settings()
        if workers is not None:
            settings = Settings.model_validate({**settings.model_dump(), "workers": workers})
        logs.configure(settings.log_level, settings.log_format)
        if settings.workers > 1 and not settings.redis_url:
            # In-memory rate-limit counters are per process: N workers would grant N times every configured limit.
            raise BootError("workers", f"--workers {settings.workers} needs GATEWAY_REDIS_URL (rate-limit counters "
                                       "shared by the workers); without Redis run one worker")
        with contextlib.ExitStack() as stack:
            if settings.workers > 1 and not check:
                from gateway.boot.workers import private_metrics_dir

                stack.enter_context(private_metrics_dir())
            from gateway.boot import serve

            if check:
                serve.prepare(settings, check_only=True)
                print("gateway: all boot checks passed (settings, policy, litellm version, environment, vault, "
                      "database, redis, prices)")
                return 0
            if settings.workers > 1:
                return serve.serve_workers(settings)
            return serve.serve(settings)
    except BootError as exc:
        print(exc.line(), file=sys.stderr)
        return 2
