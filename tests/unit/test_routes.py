"""The route table: exact routes, the one customer prefix route, the admin prefix; labels never carry client text."""

from __future__ import annotations

import pytest

from gateway.routes import Endpoint, is_preflight, metric_label, resolve


@pytest.mark.parametrize(("method", "path", "endpoint"), [
    ("POST", "/v1/chat/completions", Endpoint.HANDOFF),
    ("GET", "/v1/models", Endpoint.MODELS),
    ("GET", "/v1/models/chat-model", Endpoint.MODEL),
    ("GET", "/v1/models/org/model:v1", Endpoint.MODEL),
    ("POST", "/admin/keys", Endpoint.ADMIN),
    ("GET", "/readyz", Endpoint.READY),
    ("GET", "/v1/models/", None),  # no id
    ("POST", "/v1/models/chat-model", None),
    ("GET", "/v1/chat/completions", None),
    ("POST", "/v1/chat/completions/", None),
    ("GET", "/admin", None),
    ("GET", "/v1/modelsx", None),
])
def test_resolve(method: str, path: str, endpoint: Endpoint | None) -> None:
    assert resolve(method, path) is endpoint


def test_metric_labels_are_templates() -> None:
    assert metric_label("GET", "/v1/models/anything-a-client-sends") == "/v1/models/{id}"
    assert metric_label("GET", "/v1/chat/completions") == "other"
    assert metric_label("DELETE", "/admin/keys/key_1") == "/admin"
    assert metric_label("GET", "/some/probe/path") == "other"


def test_preflights_follow_the_cors_routes() -> None:
    assert is_preflight("OPTIONS", "/v1/chat/completions") and is_preflight("OPTIONS", "/v1/models/chat-model")
    assert not is_preflight("OPTIONS", "/admin/keys") and not is_preflight("OPTIONS", "/readyz")
    assert not is_preflight("GET", "/v1/models")
