"""The customer surface end to end with the official openai SDK; the stand-in shows what reached the provider."""

from __future__ import annotations

import openai
import pytest

from tests.support import RunningGateway, StandIn


@pytest.fixture()
def client(gateway: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.customer_key, max_retries=0)


def _only_request(standin: StandIn, path: str) -> dict:
    seen = [r for r in standin.recorder.all() if r["path"] == path]
    assert len(seen) == 1, seen
    return seen[0]


def _assert_provider_credential_only(request: dict, gateway: RunningGateway, provider_key: str) -> None:
    # The provider sees its own key from Vault, and never a gateway key (customer, admin) or the master key.
    assert request["headers"]["authorization"] == f"Bearer {provider_key}"
    flat = repr(request)
    assert gateway.customer_key not in flat
    assert gateway.admin_key not in flat


def test_chat_completion(client: openai.OpenAI, gateway: RunningGateway, standin: StandIn, stack) -> None:
    standin.recorder.clear()
    reply = client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=5)
    assert reply.choices[0].message.content == "Hello from the provider stand-in."
    assert reply.usage is not None and reply.usage.total_tokens == 16
    upstream = _only_request(standin, "/v1/chat/completions")
    _assert_provider_credential_only(upstream, gateway, stack.provider_key)
    assert stack.master_key not in repr(upstream)
    assert upstream["body"]["model"] == "upstream-chat"
    assert upstream["body"]["messages"] == [{"role": "user", "content": "Hi"}]
    assert upstream["body"]["max_tokens"] == 5


def test_chat_completion_streaming(client: openai.OpenAI, gateway: RunningGateway, standin: StandIn, stack) -> None:
    standin.recorder.clear()
    stream = client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "Hi"}],
                                            stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the provider stand-in."
    upstream = _only_request(standin, "/v1/chat/completions")
    assert upstream["body"]["stream"] is True
    _assert_provider_credential_only(upstream, gateway, stack.provider_key)


def test_text_completion(client: openai.OpenAI, gateway: RunningGateway, standin: StandIn, stack) -> None:
    standin.recorder.clear()
    reply = client.completions.create(model="text-model", prompt="Say hi")
    assert reply.choices[0].text == "Hello from the provider stand-in."
    upstream = _only_request(standin, "/v1/completions")
    assert upstream["body"]["model"] == "upstream-text"
    assert upstream["body"]["prompt"] in ("Say hi", ["Say hi"])
    _assert_provider_credential_only(upstream, gateway, stack.provider_key)


def test_embeddings(client: openai.OpenAI, gateway: RunningGateway, standin: StandIn, stack) -> None:
    standin.recorder.clear()
    reply = client.embeddings.create(model="embed-model", input=["a", "b"])
    assert [d.embedding for d in reply.data] == [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    upstream = _only_request(standin, "/v1/embeddings")
    assert upstream["body"]["model"] == "upstream-embed"
    assert upstream["body"]["input"] == ["a", "b"]
    _assert_provider_credential_only(upstream, gateway, stack.provider_key)


def test_models_lists_only_what_the_key_may_use(gateway: RunningGateway) -> None:
    key, _ = gateway.keys.customer(models=["embed-model"])
    listed = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0).models.list()
    assert [m.id for m in listed.data] == ["embed-model"]
    everything = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.customer_key, max_retries=0)
    assert sorted(m.id for m in everything.models.list().data) == ["chat-model", "echo-error-model", "embed-model",
                                                                   "failing-model", "slow-model", "text-model"]


def test_the_sdk_retrieves_only_the_keys_models(gateway: RunningGateway) -> None:
    key, _ = gateway.keys.customer(models=["embed-model"])
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    model = client.models.retrieve("embed-model")
    assert (model.id, model.object, model.owned_by) == ("embed-model", "model", "openai")  # the kind
    for other in ("chat-model", "no-such-model"):  # another key's model and an unknown one look the same
        with pytest.raises(openai.NotFoundError) as caught:
            client.models.retrieve(other)
        assert caught.value.body["code"] == "model_not_found" and other not in str(caught.value.body)


def test_model_outside_the_keys_allow_list_is_403(client: openai.OpenAI, standin: StandIn) -> None:
    standin.recorder.clear()
    for model in ("other-chat-model", "not-in-policy", "openai/upstream-chat", "upstream-chat"):
        with pytest.raises(openai.PermissionDeniedError) as caught:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
        assert caught.value.body["code"] == "model_not_allowed"
    assert standin.recorder.all() == []


def test_store_false_and_safety_identifier_reach_the_provider(client: openai.OpenAI, standin: StandIn) -> None:
    standin.recorder.clear()
    client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                   store=False, safety_identifier="user-1234")
    (call,) = [c for c in standin.recorder.all() if c["method"] == "POST"]
    assert call["body"]["store"] is False and call["body"]["safety_identifier"] == "user-1234"
    # Stored completions would sit in the provider account every tenant shares: refused before anything is sent.
    standin.recorder.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "Hi"}], store=True)
    assert refused.value.body["param"] == "store" and standin.recorder.all() == []
