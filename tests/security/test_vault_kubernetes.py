"""GATEWAY_VAULT_AUTH=kubernetes against a real OpenBao whose kubernetes auth method asks a TokenReview stand-in (the
cluster's API, which a test cannot run): the role binds a service account, a namespace and an audience; a token
outside them, expired, or one the cluster no longer vouches for stops the boot with one line naming why."""

from __future__ import annotations

import datetime
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.boot.bootstrap import POLICY_NAME, render_policy
from gateway.boot.settings import Settings
from gateway.devstack.openbao import free_port
from tests.support import Stack, boot_check, boot_refusal_line

SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
MOUNT = "kubernetes"
ROLE = "gateway"
AUDIENCE = "gateway-vault"


class TokenReview(BaseHTTPRequestHandler):
    """The cluster's TokenReview API: vouches for a token unless its uid was revoked; records what Vault asked."""

    revoked_uids: ClassVar[set[str]] = set()
    reviews: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        claims = jwt.decode(body["spec"]["token"], options={"verify_signature": False})
        service_account = claims["kubernetes.io"]["serviceaccount"]
        self.reviews.append({"path": self.path, "audiences": body["spec"].get("audiences"),
                             "reviewer": self.headers.get("Authorization", "").startswith("Bearer ")})
        status = {"authenticated": service_account["uid"] not in self.revoked_uids,
                  "user": {"username": claims["sub"], "uid": service_account["uid"], "groups": []},
                  "audiences": claims["aud"]}
        data = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "status": status}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


def _token(namespace: str = "llm", name: str = "gateway", uid: str = "uid-gateway", **overrides: object) -> str:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "https://kubernetes.default.svc.cluster.local", "aud": [AUDIENCE],
        "sub": f"system:serviceaccount:{namespace}:{name}", "iat": now, "nbf": now, "exp": now + 600,
        "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name, "uid": uid}},
    }
    claims.update(overrides)
    return jwt.encode(claims, SIGNING_KEY, algorithm="ES256")


def _cluster_ca() -> str:
    """Vault wants the cluster's CA even though the stand-in speaks plain http on loopback."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-ca")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


@pytest.fixture(scope="module")
def cluster(stack: Stack) -> Iterator[Stack]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), TokenReview)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = stack.root()
    root.sys.enable_auth_method("kubernetes", path=MOUNT)
    root.sys.create_or_update_policy(name=POLICY_NAME, policy=render_policy(Settings(vault_addr=stack.vault_addr)))
    root.auth.kubernetes.configure(kubernetes_host=f"http://127.0.0.1:{server.server_port}",
                                   kubernetes_ca_cert=_cluster_ca(), disable_local_ca_jwt=True,
                                   token_reviewer_jwt=_token("kube-system", "vault-reviewer", "uid-reviewer"),
                                   mount_point=MOUNT)
    # The same tokens as the AppRole role (secrets/approle-gateway.json): runtime policy only, 5 minutes, 5 uses.
    root.write_data(f"auth/{MOUNT}/role/{ROLE}", data={
        "bound_service_account_names": ["gateway"], "bound_service_account_namespaces": ["llm"],
        "audience": AUDIENCE, "token_policies": [POLICY_NAME], "token_no_default_policy": True,
        "token_ttl": "5m", "token_max_ttl": "10m", "token_num_uses": 5, "token_type": "service"})
    yield stack
    server.shutdown()
    server.server_close()
    root.sys.disable_auth_method(MOUNT)


def _boot_check(stack: Stack, folder: Path, token: str) -> subprocess.CompletedProcess[str]:
    token_file = folder / "sa" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(token)
    token_file.chmod(0o644)
    return boot_check(stack, folder, drop=("GATEWAY_VAULT_ROLE_ID_FILE", "GATEWAY_VAULT_SECRET_ID_FILE"),
                      unseen=(token,), GATEWAY_VAULT_AUTH="kubernetes", GATEWAY_VAULT_JWT_FILE=str(token_file),
                      GATEWAY_VAULT_JWT_ROLE=ROLE)


def test_a_service_account_token_logs_in_through_token_review(cluster: Stack, tmp_path: Path) -> None:
    """threat-model: TM-S6"""
    TokenReview.reviews.clear()
    result = _boot_check(cluster, tmp_path, _token())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all boot checks passed" in result.stdout
    # Vault asked the cluster, with its reviewer credential, for the role's audience.
    assert TokenReview.reviews == [{"path": "/apis/authentication.k8s.io/v1/tokenreviews", "audiences": [AUDIENCE],
                                    "reviewer": True}]


@pytest.mark.parametrize(("token", "reason"), [
    (lambda: _token(name="someone-else"), "the token's service account is not one the role accepts"),
    (lambda: _token(namespace="other"), "the token's namespace is not one the role accepts"),
    (lambda: _token(aud=["kubernetes-api"]), "the token's audience (aud) is not one the role accepts"),
    (lambda: _token(iat=int(time.time()) - 1800, nbf=int(time.time()) - 1800, exp=int(time.time()) - 900),
     "the token has expired (exp)"),
    (lambda: _token(uid="uid-revoked"),
     "the cluster's TokenReview did not authenticate the token (revoked, or not from this cluster)"),
], ids=["service-account", "namespace", "audience", "expired", "revoked"])
def test_a_token_the_role_or_the_cluster_refuses(cluster: Stack, tmp_path: Path, token: object, reason: str) -> None:
    """threat-model: TM-S6"""
    TokenReview.revoked_uids.add("uid-revoked")
    assert callable(token)
    line = boot_refusal_line(_boot_check(cluster, tmp_path, token()))
    assert line == f"gateway: boot failed at vault login: Kubernetes login refused: {reason}", line
