"""Google's default credentials are never consulted for a vertex_ai call: with the service account's JSON that the
approval check holds every call to, LiteLLM's Vertex path (google-auth inside) reads no gcloud file, no
GOOGLE_APPLICATION_CREDENTIALS file, and opens no connection but the one to the JSON's token_uri; not the metadata
server (169.254.169.254, metadata.google.internal). Watched with a Python audit hook on every file open and socket
connect of this process, while HOME holds a gcloud default-credentials file of another account. Without the JSON the
same code does read that file: the hook sees what it must.

threat-model: TM-S9
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.boot.litellm_mount import import_litellm
from gateway.devstack.standin_vertex import ServiceAccounts, throwaway_service_account
from tests.support import StandIn

# On while a test watches: every thread of the process is watched (LiteLLM runs google-auth's refresh in a worker
# thread); the stand-in's server thread only accepts connections, and reads no file.
_WATCH = {"on": False}
_EVENTS: list[tuple[str, str]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _WATCH["on"]:
        return
    if event == "open" and args:
        _EVENTS.append(("open", str(args[0])))
    elif event == "socket.connect" and len(args) > 1:
        _EVENTS.append(("connect", str(args[1])))
    elif event == "socket.getaddrinfo" and args:
        _EVENTS.append(("resolve", str(args[0])))


sys.addaudithook(_audit)  # an audit hook cannot be removed; it records only while a test turns it on


@pytest.fixture
def watched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[StandIn, str, str]]:
    import_litellm()
    accounts = ServiceAccounts({})
    standin = StandIn(service_accounts=accounts).start()
    token_uri = standin.root_url + "/token"
    email, adc_email = "gw@proj-one.iam.gserviceaccount.com", "adc@proj-one.iam.gserviceaccount.com"
    text, account = throwaway_service_account(email, frozenset({"proj-one"}), token_uri)
    adc_text, adc_account = throwaway_service_account(adc_email, frozenset({"proj-one"}), token_uri)
    accounts.accounts.update({email: account, adc_email: adc_account})
    gcloud = tmp_path / ".config" / "gcloud"
    gcloud.mkdir(parents=True)
    (gcloud / "application_default_credentials.json").write_text(adc_text)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "GCE_METADATA_HOST", "GCE_METADATA_IP"):
        monkeypatch.delenv(name, raising=False)
    _EVENTS.clear()
    try:
        yield standin, text, str(gcloud)
    finally:
        _WATCH["on"] = False
        standin.stop()


def _holders(standin: StandIn) -> list[object]:
    return [call.get("token_holder") for call in standin.recorder.all() if call["path"] == "/token"]


def _watched_token(credentials: str | None) -> tuple[str, str]:
    from litellm.llms.vertex_ai.vertex_llm_base import VertexBase

    async def fetch() -> tuple[str, str]:
        _WATCH["on"] = True
        try:
            return await VertexBase().get_access_token_async(credentials=credentials, project_id="proj-one")
        finally:
            _WATCH["on"] = False

    return asyncio.run(fetch())


def test_the_policys_service_account_is_used_and_nothing_else_is_read_or_called(
        watched: tuple[StandIn, str, str]) -> None:
    standin, text, gcloud = watched
    token, project = _watched_token(text)
    assert project == "proj-one" and token.startswith("ya29.standin-")
    assert _holders(standin) == ["gw@proj-one.iam.gserviceaccount.com"]
    opened = [path for kind, path in _EVENTS if kind == "open"]
    assert not [path for path in opened if gcloud in path or "gcloud" in path or "application_default" in path]
    connected = {address for kind, address in _EVENTS if kind == "connect"}
    resolved = {host for kind, host in _EVENTS if kind == "resolve"}
    assert connected and all(address.startswith("('127.0.0.1'") for address in connected), connected
    assert not {"169.254.169.254", "metadata.google.internal", "metadata"} & resolved, resolved


def test_without_the_service_account_google_auth_would_read_the_gcloud_file(
        watched: tuple[StandIn, str, str]) -> None:
    # What the approval check prevents (a call without the policy's JSON): google-auth's default credentials.
    standin, _, gcloud = watched
    token, _project = _watched_token(None)
    assert token.startswith("ya29.standin-")
    assert _holders(standin) == ["adc@proj-one.iam.gserviceaccount.com"]
    assert any(kind == "open" and gcloud in path for kind, path in _EVENTS), json.dumps(_EVENTS[:20])
