"""The deployment artifacts keep their security properties: the Dockerfile and deploy/kubernetes/.

`make deploy-check` runs the scanners (kubernetes-validate, checkov, hadolint) over the same files, but a scanner's
rule can be skipped with a line, and some properties are the gateway's own (a credential file must be a regular file
its user owns, no secret may sit in the environment). These tests read the files and fail on any edit that weakens
them: root, a writable root filesystem, a secret value in the environment, a Kubernetes Secret or password file in the
pod (the Postgres and Redis passwords come from Vault, so the pod needs nothing but its Vault login material), the
Kubernetes API token, a Vault token without its audience, probes on the wrong paths, a NetworkPolicy that lets more
through.

threat-model: TM-T15
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from gateway.boot.errors import BootError
from gateway.boot.fleet import redis_options
from gateway.boot.litellm_mount import FORBIDDEN_ENV, NEUTRALIZED_ENV, TRANSPORT_ENV
from gateway.boot.settings import Settings, url_carries_credential
from gateway.policy import load_policy
from gateway.routes import ROUTES, Endpoint
from tests.support import REPO

DOCKERFILE = REPO / "Dockerfile"
MANIFESTS = REPO / "deploy/kubernetes"
# A name that says it carries a secret; in the gateway's environment such a name must point at a file instead, or be
# one of the switches that take a password from Vault.
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|(^|_)KEY($|_)|CREDENTIAL|PGPASS|(^|_)JWT$", re.IGNORECASE)
# A name about a datastore password: only the Vault switches may carry one, never a file, a variable or libpq's own.
PASSWORD_NAME = re.compile(r"PASSWORD|PASSWD|PGPASS", re.IGNORECASE)
VAULT_PASSWORDS = {"GATEWAY_DATABASE_PASSWORD_FROM_VAULT", "GATEWAY_REDIS_PASSWORD_FROM_VAULT"}
# The Vault login settings (JWT with the projected token), validated only where the settings know the jwt method.
VAULT_LOGIN = {"GATEWAY_VAULT_AUTH", "GATEWAY_VAULT_JWT_FILE", "GATEWAY_VAULT_JWT_ROLE"}
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [(path, document) for document in yaml.safe_load_all(path.read_text()) if document]
    return found


def _one(kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [doc for _, doc in _documents() if doc["kind"] == kind and name in (None, doc["metadata"]["name"])]
    assert len(matches) == 1, (kind, name, len(matches))
    return matches[0]


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return spec


def _gateway_container() -> dict[str, Any]:
    [container] = [c for c in _pod()["containers"] if c["name"] == "gateway"]
    return container


def _env() -> dict[str, str]:
    return {item["name"]: item["value"] for item in _gateway_container()["env"]}


def _mount_source(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The gateway container's mount that provides the file at ``path``, and the volume behind it."""
    for mount in _gateway_container()["volumeMounts"]:
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            [volume] = [v for v in _pod()["volumes"] if v["name"] == mount["name"]]
            return mount, volume
    raise AssertionError(f"no volume provides {path}")


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's instructions (keyword, arguments), continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def _runtime_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    starts = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    return instructions[starts[-1]:]


def _image_user() -> int:
    [user] = [rest for keyword, rest in _runtime_stage() if keyword == "USER"]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), "a numeric user and group, so Kubernetes can check runAsNonRoot"
    return int(uid)


# --- Dockerfile ---------------------------------------------------------------------------------------------------


def test_image_runs_as_a_fixed_non_root_user_that_the_manifests_name() -> None:
    uid = _image_user()
    assert uid >= 10000  # above the ranges distributions give their own users
    assert _pod()["securityContext"]["runAsUser"] == uid


def test_image_installs_only_from_the_hash_locked_requirements() -> None:
    runs = [rest for keyword, rest in _instructions() if keyword == "RUN"]
    installs = [part.strip() for run in runs for part in run.split("&&") if " install " in f" {part} "]
    assert installs
    for install in installs:
        words = shlex.split(install)
        if "-r" in words:  # a lock: every file read is under requirements/, hashes required, nothing resolved
            assert "--require-hashes" in words and "--no-deps" in words, install
            locks = [words[i + 1] for i, word in enumerate(words) if word == "-r"]
            assert all(lock.startswith("requirements/") and lock.endswith(".txt") for lock in locks), install
        else:  # the gateway's own wheel, just built from this context, without dependencies
            assert "--no-deps" in words and words[-1] == "/tmp/wheels/llm_gateway-*.whl", install
    wheel = [part for run in runs for part in run.split("&&") if " wheel " in part]
    assert wheel and all("--no-deps" in part and "--no-build-isolation" in part for part in wheel)
    assert any("requirements/runtime.txt" in install and "--compile-bytecode" in install for install in installs)
    # No installer at run time: the gateway's virtualenv is made without pip, and the base image's pip is removed.
    assert any("venv --without-pip /opt/gateway" in run for run in runs)
    assert any("pip uninstall --yes --no-input pip" in rest for keyword, rest in _runtime_stage() if keyword == "RUN")
    # ...and ensurepip, which would put pip back from the wheel it bundles.
    assert any("import ensurepip" in rest and "rm -rf" in rest for keyword, rest in _runtime_stage() if keyword == "RUN")


def test_image_carries_no_secret_and_no_build_context_at_run_time() -> None:
    for keyword, rest in _instructions():
        if keyword in ("ENV", "ARG", "LABEL"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", rest) or [rest.split()[0]]
            assert not [name for name in names if SECRET_NAME.search(name)], rest
        if keyword in ("COPY", "ADD"):
            assert not re.search(r"(^|\s)(\.|\./|var|secrets|tests|\.venv)\S*(\s|$)", rest.split()[0]), rest
    # The runtime stage takes the built virtualenv and nothing from the build context.
    copies = [rest for keyword, rest in _runtime_stage() if keyword in ("COPY", "ADD")]
    assert copies and all(rest.startswith("--from=build ") for rest in copies)
    assert not [rest for keyword, rest in _instructions() if keyword == "ADD"]


def test_image_is_pinned_and_starts_the_gateway() -> None:
    bases = [rest.split()[0] for keyword, rest in _instructions() if keyword == "FROM"]
    # An explicit Python release (the locks are compiled for 3.11), never a floating "latest".
    assert bases and all(re.fullmatch(r"python:3\.11[\w.-]*(@sha256:[0-9a-f]{64})?", base) for base in bases)
    assert "--python-version 3.11" in (REPO / "Makefile").read_text()
    runtime = dict(_runtime_stage())
    assert runtime["ENTRYPOINT"] == '["gateway"]' and runtime["CMD"] == '["serve"]'
    environment = " ".join(rest for keyword, rest in _runtime_stage() if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in environment
    assert "TMPDIR=/tmp" in environment


def test_build_context_lets_in_only_what_the_image_needs() -> None:
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything is out unless let in below
    let_in = {line.removeprefix("!").rstrip("/") for line in lines if line.startswith("!")}
    assert let_in == {"gateway", "requirements", "pyproject.toml"}


# --- Pod ----------------------------------------------------------------------------------------------------------


def test_no_kubernetes_api_token_is_mounted() -> None:
    account = _one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert _pod()["automountServiceAccountToken"] is False
    assert _pod()["serviceAccountName"] == account["metadata"]["name"]


def test_every_container_is_unprivileged_on_a_read_only_root() -> None:
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # fsGroup would add the group's read bit to the projected token, which boot then refuses (0600 only).
    assert "fsGroup" not in pod["securityContext"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    assert not [volume for volume in pod["volumes"] if "hostPath" in volume]
    containers = pod["containers"] + pod.get("initContainers", [])
    for container in containers:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["runAsNonRoot"] is True and context.get("runAsUser", _image_user()) == _image_user()
        assert not context.get("privileged")
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert {"cpu", "memory"} <= set(container["resources"]["limits"]), container["name"]
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), container["name"]
        assert DIGEST.search(container["image"]), "images are pinned by digest"


def test_only_the_temporary_folder_is_writable() -> None:
    writable = [mount for mount in _gateway_container()["volumeMounts"] if not mount.get("readOnly")]
    assert [mount["mountPath"] for mount in writable] == ["/tmp"]
    [volume] = [v for v in _pod()["volumes"] if v["name"] == writable[0]["name"]]
    assert "emptyDir" in volume and volume["emptyDir"]["sizeLimit"]


def test_environment_names_files_and_addresses_never_a_secret() -> None:
    pod = _pod()
    assert pod["enableServiceLinks"] is False  # no variable Kubernetes would add on its own
    for container in pod["containers"] + pod.get("initContainers", []):
        assert "envFrom" not in container
        for item in container.get("env", []):
            assert set(item) == {"name", "value"}, f"{item['name']}: a literal value, never from a Secret"
    env = _env()
    for name, value in env.items():
        if name in VAULT_PASSWORDS:
            assert value == "true", name
        elif SECRET_NAME.search(name):
            assert name.endswith("_FILE") and not PASSWORD_NAME.search(name), f"{name}: no password file in the pod"
            assert value.startswith("/"), name
        if "://" in value:
            assert not url_carries_credential(value), name
    forbidden = {*FORBIDDEN_ENV, *TRANSPORT_ENV, *NEUTRALIZED_ENV}
    assert not [name for name in env if name.upper() in forbidden or name.lower().endswith("_proxy")]


def test_credential_files_are_regular_files_the_gateway_user_owns() -> None:
    env = _env()
    # The Vault login token: projected for Vault alone, short-lived, a single file (a volume's keys are symlinks,
    # which boot refuses), owned by the pod's user because every container runs as it.
    mount, volume = _mount_source(env["GATEWAY_VAULT_JWT_FILE"])
    [source] = volume["projected"]["sources"]
    token = source["serviceAccountToken"]
    assert token["audience"] == "vault"
    assert 600 <= token["expirationSeconds"] <= 3600
    assert mount["mountPath"] == env["GATEWAY_VAULT_JWT_FILE"] and mount["subPath"] == token["path"]
    assert env["GATEWAY_VAULT_AUTH"] == "jwt"
    mount, volume = _mount_source(env["GATEWAY_VAULT_CACERT"])
    assert mount["mountPath"] == env["GATEWAY_VAULT_CACERT"] and "subPath" in mount
    assert env["GATEWAY_VAULT_ADDR"].startswith("https://")


def test_pod_needs_nothing_but_its_vault_login() -> None:
    # The Postgres and Redis passwords come from Vault (secret/gateway/datastores): no Kubernetes Secret reaches the
    # pod in any form, so a Secret brought back for a password fails here. Volumes are an allow-list: a projected
    # token for Vault only, ConfigMaps (CAs, policy) and scratch space; a secret, a projected secret or a CSI
    # secrets-store volume is none of these.
    pod = _pod()
    for volume in pod["volumes"]:
        kinds = set(volume) - {"name"}
        assert kinds in ({"projected"}, {"configMap"}, {"emptyDir"}), volume
        if "projected" in volume:
            assert [set(source) for source in volume["projected"]["sources"]] == [{"serviceAccountToken"}], volume
    # Nothing left to copy into place before the gateway starts.
    assert not pod.get("initContainers")
    assert [container["name"] for container in pod["containers"]] == ["gateway"]
    env = _env()
    assert {name for name in env if PASSWORD_NAME.search(name)} == VAULT_PASSWORDS
    assert all(env[name] == "true" for name in VAULT_PASSWORDS)
    # The URL keeps the user name and verified TLS, never the password.
    database = env["GATEWAY_DATABASE_URL"]
    assert database.startswith("postgresql+psycopg://gateway@") and "sslmode=verify-full" in database
    assert not url_carries_credential(database)
    # Redis over TLS, checked against a CA from the ConfigMap: the password never crosses the network in clear.
    redis_url = env["GATEWAY_REDIS_URL"]
    assert redis_url.startswith("rediss://") and not url_carries_credential(redis_url)
    ca = redis_url.split("ssl_ca_certs=", 1)[1].split("&", 1)[0]
    mount, volume = _mount_source(ca)
    assert volume.get("configMap", {}).get("name") == "gateway-ca" and mount["readOnly"] is True


def test_manifest_settings_pass_the_gateways_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    """The datastore settings the manifest sets are a combination boot accepts, and one that cannot reach Redis
    without the password from Vault. The Vault login part is included where the settings know the jwt method."""
    for name in list(os.environ):
        if name.startswith(("GATEWAY_", "PG")):
            monkeypatch.delenv(name)
    login_known = "jwt" in get_args(Settings.model_fields["vault_auth"].annotation)
    for name, value in _env().items():
        if login_known or name not in VAULT_LOGIN:
            monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.database_password_from_vault and settings.redis_password_from_vault
    assert settings.redis_password_file is None and settings.database_url == _env()["GATEWAY_DATABASE_URL"]
    with pytest.raises(BootError, match="no password was read from Vault"):
        redis_options(settings)


def test_probes_use_the_gateways_probe_routes() -> None:
    container = _gateway_container()
    paths = {route.endpoint: route.path for route in ROUTES}
    assert container["livenessProbe"]["httpGet"]["path"] == paths[Endpoint.HEALTH] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == paths[Endpoint.HEALTH]
    assert container["readinessProbe"]["httpGet"]["path"] == paths[Endpoint.READY] == "/readyz"
    [port] = container["ports"]
    assert all(container[probe]["httpGet"]["port"] == port["name"]
               for probe in ("livenessProbe", "readinessProbe", "startupProbe"))
    assert str(port["containerPort"]) == _env()["GATEWAY_PORT"]


def test_shutdown_grace_fits_in_the_pods_termination_grace() -> None:
    pause = _gateway_container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert _pod()["terminationGracePeriodSeconds"] > int(_env()["GATEWAY_SHUTDOWN_GRACE_SECONDS"]) + pause


def test_policy_config_map_is_the_repositorys_policy(tmp_path: Path) -> None:
    text = _one("ConfigMap", "gateway-policy")["data"]["gateway.yaml"]
    assert text == (REPO / "policy/gateway.yaml").read_text()
    (tmp_path / "gateway.yaml").write_text(text)
    load_policy(tmp_path / "gateway.yaml")
    mount, volume = _mount_source(_env()["GATEWAY_POLICY_FILE"])
    assert volume["configMap"]["name"] == "gateway-policy" and mount["readOnly"] is True


# --- Network ------------------------------------------------------------------------------------------------------


def test_namespace_denies_all_traffic_by_default() -> None:
    policy = _one("NetworkPolicy", "default-deny")["spec"]
    assert policy == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_gateway_talks_only_to_its_listed_peers() -> None:
    policy = _one("NetworkPolicy", "llm-gateway")["spec"]
    assert policy["podSelector"]["matchLabels"] == _one("Deployment")["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    [ingress] = policy["ingress"]
    assert ingress["ports"] == [{"protocol": "TCP", "port": int(_env()["GATEWAY_PORT"])}]
    assert [peer.keys() for peer in ingress["from"]] == [{"namespaceSelector", "podSelector"}]
    for rule in policy["egress"]:
        # No rule without ports or destinations: either would open every port or every address.
        assert rule["ports"] and rule["to"], rule
        peers = rule["to"]
        if any("ipBlock" in peer for peer in peers):
            # The providers: https only, and never the private, link-local (metadata) or loopback ranges.
            assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
            v4 = next(peer["ipBlock"] for peer in peers if peer["ipBlock"]["cidr"] == "0.0.0.0/0")
            assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8"} <= set(v4["except"])
            v6 = next(peer["ipBlock"] for peer in peers if peer["ipBlock"]["cidr"] == "::/0")
            assert {"fc00::/7", "fe80::/10", "::1/128"} <= set(v6["except"])
        else:
            assert all({"namespaceSelector", "podSelector"} == set(peer) for peer in peers), rule
    ports = sorted(port["port"] for rule in policy["egress"] for port in rule["ports"])
    assert ports == [53, 53, 443, 5432, 6379, 8200]


# --- The checks themselves ----------------------------------------------------------------------------------------


def test_make_test_runs_the_deployment_checks_and_they_fail_on_findings() -> None:
    makefile = (REPO / "Makefile").read_text()
    test_recipe = makefile.split("\ntest: ", 1)[1].split("\n\n", 1)[0]
    assert "deploy-check" in test_recipe
    recipe = makefile.split("\ndeploy-check: ", 1)[1].split("\n\n", 1)[0]
    assert "kubernetes-validate --strict" in recipe and "deploy/kubernetes/*.yaml" in recipe
    assert "checkov" in recipe and "-f Dockerfile deploy/kubernetes/*.yaml" in recipe and "soft-fail" not in recipe
    assert "hadolint Dockerfile" in recipe and "--no-fail" not in recipe


@pytest.mark.parametrize("path", [DOCKERFILE, *sorted(MANIFESTS.glob("*.yaml"))], ids=lambda p: p.name)
def test_every_suppressed_finding_gives_its_reason(path: Path) -> None:
    text = path.read_text()
    for skip in re.findall(r"checkov:skip=[^\n]*", text):
        assert re.fullmatch(r"checkov:skip=CKV2?_[A-Z0-9_]+:\S.{10,}", skip), skip
    for ignore in re.findall(r"hadolint ignore=[^\n]*", text):
        assert re.fullmatch(r"hadolint ignore=DL\d{4}(,DL\d{4})*\s+#?\s*\S.{10,}", ignore), ignore
