"""Image input: https and data URLs reach the provider as sent, priced at the policy's worst case per image before
dispatch and settled from the provider's usage; nothing is fetched by the gateway, and private hosts are refused.

threat-model: TM-I8
"""

from __future__ import annotations

import base64
import socket
import threading
from collections.abc import Iterator

import openai
import pytest

from tests.support import RunningGateway, StandIn, account_state, wait_until_settled

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
IMAGE_TOKENS = 1445  # other-chat-model's max_image_tokens in the test policy


@pytest.fixture
def listener() -> Iterator[tuple[int, list[bytes]]]:
    """A loopback TCP listener that records every connection made to it; none may ever be."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    contacted: list[bytes] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(1)
            try:
                contacted.append(connection.recv(200))
            except OSError:
                contacted.append(b"")
            connection.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1], contacted
    stop.set()
    thread.join(timeout=2)
    server.close()


def _client(gateway: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


def test_images_reach_the_provider_as_sent_and_are_priced_per_image(gateway: RunningGateway,
                                                                    standin: StandIn) -> None:
    account = gateway.keys.account(10**9)
    key, _ = gateway.keys.customer(models=["other-chat-model"], account_id=account)
    parts = [{"type": "text", "text": "What is in these?"},
             {"type": "image_url", "image_url": {"url": "https://images.example/cat.png", "detail": "high"}},
             {"type": "image_url", "image_url": {"url": PNG, "detail": "low"}}]
    standin.recorder.clear()
    answer = _client(gateway, key).chat.completions.create(
        model="other-chat-model", messages=[{"role": "user", "content": parts}], max_tokens=10)
    assert answer.choices[0].message.content
    (call,) = [c for c in standin.recorder.all() if c["method"] == "POST"]
    assert call["body"]["messages"][0]["content"] == parts
    # The reservation counted two images at the policy's worst case; the charge is the provider's usage.
    entries = wait_until_settled(gateway, account)["recent_ledger"]
    reserved = next(e["amount_micro_usd"] for e in entries if e["kind"] == "reserve")
    charged = next(e["amount_micro_usd"] for e in entries if e["kind"] == "settle")
    assert reserved >= 2 * IMAGE_TOKENS and charged < reserved


def test_a_model_without_an_image_price_refuses_images(gateway: RunningGateway, standin: StandIn) -> None:
    account = gateway.keys.account(10**9)
    key, _ = gateway.keys.customer(models=["chat-model"], account_id=account)
    standin.recorder.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        _client(gateway, key).chat.completions.create(model="chat-model", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://images.example/cat.png"}}]}])
    assert refused.value.body["code"] == "unsupported_content"
    assert standin.recorder.all() == []
    assert account_state(gateway, account)["reserved_micro_usd"] == 0


def test_no_image_url_is_fetched_by_the_gateway_and_private_hosts_are_refused(
        gateway: RunningGateway, standin: StandIn, listener: tuple[int, list[bytes]]) -> None:
    port, contacted = listener
    key, _ = gateway.keys.customer(models=["other-chat-model"])
    client = _client(gateway, key)
    standin.recorder.clear()
    for url in (f"https://127.0.0.1:{port}/x.png", f"https://localhost:{port}/x.png", f"http://127.0.0.1:{port}/x",
                f"https://[::1]:{port}/x.png", "https://169.254.169.254/latest/meta-data/"):
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="other-chat-model", messages=[{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}])
        assert refused.value.body["param"] == "messages[0].content[0].image_url.url"
    # A public name is passed on for the provider to fetch: the gateway itself never connects to it. This name
    # resolves nowhere here, so a fetch by this process would fail the request, and none is tried.
    answer = client.chat.completions.create(model="other-chat-model", messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://images.invalid/cat.png"}}]}], max_tokens=5)
    assert answer.choices[0].message.content
    assert contacted == []
    assert [c["body"]["messages"][0]["content"][0]["image_url"]["url"] for c in standin.recorder.all()
            if c["method"] == "POST"] == ["https://images.invalid/cat.png"]
