"""Guardrails: credentials and denied content are refused, in time linear in the text.

The timing tests compare a crafted text with prose of the same size, or with a quarter of itself, in the same run,
never with an absolute time: the backtracking engine used before took seconds on ``"sk-" * 32000`` (quadratic).

threat-model: TM-D1, TM-I2
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

import pytest
import re2

from gateway.keys import format as key_format
from gateway.pipeline.errors import Denial
from gateway.pipeline.guardrails import Guardrails

SIZE = 96_000  # "sk-" * 32000, the reported case; big enough that a quadratic scan takes seconds
PROSE = "The quick brown fox jumps over the lazy dog; nobody pasted a key here. "


def _fill(unit: str) -> str:
    return (unit * (SIZE // len(unit) + 1))[:SIZE]


def _windows(prefix: str, span: int, size: int = SIZE, seed: int = 3) -> str:
    """Starts of one format packed inside its counted repetition, each window cut short of a match: RE2's automaton
    then gains a state at nearly every byte, its own worst case (linear still, with a larger constant)."""
    rng = random.Random(seed)
    text = ""
    while len(text) < size:
        window = ""
        while len(window) + len(prefix) + 11 <= span:
            window += prefix + "".join(rng.choice("ab") for _ in range(rng.randint(0, 10))) + "-"
        text += window + " "
    return text[:size]


# One crafted text per built-in pattern: its prefix repeated, what made the OpenAI-key pattern quadratic.
WORST_CASES = {
    "openai sk-": _fill("sk-"),
    "openai sk-proj-": _fill("sk-proj-"),
    "anthropic sk-ant-api01-": _fill("sk-ant-api01-"),
    "aws AKIA": _fill("AKIA"),
    "github ghp_": _fill("ghp_"),
    "github github_pat_": _fill("github_pat_"),
    "gitlab glpat-": _fill("glpat-"),
    "slack xox": _fill("xox"),
    "slack xoxb-": _fill("xoxb-"),
    "google AIza": _fill("AIza"),
    "stripe sk_live_": _fill("sk_live_"),
    "own key lgw_ck_": _fill("lgw_ck_"),
    "private key -----BEGIN": _fill("-----BEGIN "),
}
# Starts packed inside the counted repetitions of the longer formats ({80,}, {35}, {20,}).
WINDOWS = {"anthropic": ("sk-ant-api01-", 92), "google": ("AIza", 38), "openai": ("sk-", 22)}


def _guardrails(*deny: tuple[str, str]) -> Guardrails:
    return Guardrails(secret_scan=True, deny_patterns=[(name, re2.compile(pattern)) for name, pattern in deny])


def _chat(text: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}]}


def _scan_seconds(guardrails: Guardrails, text: str) -> float:
    """Best of three, so a busy machine inflates neither side by much."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        with contextlib.suppress(Denial):
            guardrails.check("chat", _chat(text), "key_1", "req_1")
        best = min(best, time.perf_counter() - started)
    return best


def _refusal(guardrails: Guardrails, body: dict[str, Any], mode: str = "chat") -> Denial | None:
    try:
        guardrails.check(mode, body, "key_1", "req_1")
    except Denial as denial:
        return denial
    return None


@pytest.mark.parametrize("name", WORST_CASES)
def test_crafted_text_scans_in_time_linear_like_prose(name: str) -> None:
    guardrails = _guardrails(("no-project-falcon", r"(?i)project\s+falcon"))
    prose = _scan_seconds(guardrails, _fill(PROSE))
    crafted = _scan_seconds(guardrails, WORST_CASES[name])
    assert crafted < 20 * prose + 0.05, f"{name}: {crafted * 1000:.1f} ms, prose {prose * 1000:.1f} ms"


@pytest.mark.parametrize("name", WINDOWS)
def test_text_crafted_against_counted_repetitions_scans_in_linear_time(name: str) -> None:
    # Not compared with prose: RE2 spends up to some 25 times as long here. Four times the text takes about four
    # times as long (a quadratic scan would take sixteen).
    guardrails = _guardrails()
    single = _scan_seconds(guardrails, _windows(*WINDOWS[name]))
    quadruple = _scan_seconds(guardrails, _windows(*WINDOWS[name], size=4 * SIZE))
    assert quadruple < 8 * single + 0.05, f"{name}: {quadruple * 1000:.1f} ms, a quarter {single * 1000:.1f} ms"


def test_a_96_kb_sk_message_is_handled_about_as_fast_as_prose() -> None:
    guardrails = _guardrails(("no-project-falcon", r"(?i)project\s+falcon"))
    attack, prose = "sk-" * 32000, _fill(PROSE)
    assert len(attack) == len(prose) == 96_000
    assert _refusal(guardrails, _chat(attack)) is None  # not a credential: it would go to the provider
    ratio_bound = 20 * _scan_seconds(guardrails, prose) + 0.05
    assert _scan_seconds(guardrails, attack) < ratio_bound


@pytest.mark.parametrize(("secret", "kind"), [
    ("-----BEGIN OPENSSH PRIVATE KEY-----", "private_key"),
    ("AKIAIOSFODNN7EXAMPLE", "aws_access_key_id"),
    ("ghp_" + "a1" * 18, "github_token"),
    ("github_pat_" + "A_b" * 27 + "c", "github_token"),
    ("glpat-" + "x-Y_" * 5, "gitlab_token"),
    ("xoxb-123456789012-abcdefghijkl", "slack_token"),
    ("AIza" + "B-c_" * 8 + "def", "google_api_key"),
    ("sk_live_" + "a" * 30, "stripe_secret_key"),
    ("sk-proj-" + "a" * 20 + "T3BlbkFJ" + "b-c" * 9, "openai_api_key"),
    ("sk-" + "Q" * 48 + "T3BlbkFJ" + "Z" * 20, "openai_api_key"),
    ("sk-ant-api03-" + "a_B-" * 25, "anthropic_api_key"),
])
def test_each_credential_format_is_refused_by_kind(secret: str, kind: str) -> None:
    denial = _refusal(_guardrails(), _chat(f"here it is: {secret}, thanks"))
    assert denial is not None and (denial.status, denial.code) == (400, "secret_in_prompt")
    assert kind in denial.message and secret not in denial.message


@pytest.mark.parametrize("text", [
    "xAKIAIOSFODNN7EXAMPLE",  # no word boundary before the prefix
    "AKIAIOSFODNN7EXAMPLE1",  # one character too many
    "sk-" + "a" * 19 + "T3BlbkFJ" + "b" * 20,  # too short before the marker
    "sk-" + "a" * 20 + "T3BlbkFJ" + "b" * 19,  # too short after it
    "sk-ant-api03-" + "a" * 79,
    "xoxb-123456789",
    "ghp_" + "a" * 35,
    "Tell me about Python's sk-learn, AIza the cat and the glpat- prefix.",
])
def test_near_misses_pass(text: str) -> None:
    assert _refusal(_guardrails(), _chat(text)) is None


def test_only_our_keys_with_a_valid_checksum_count() -> None:
    real = key_format.generate(key_format.KeyKind.ADMIN)
    typo = real[:-1] + ("A" if real[-1] != "A" else "B")
    guardrails = _guardrails()
    denial = _refusal(guardrails, {"model": "m", "input": [f"{typo} {typo}", f"key={real}"]}, mode="embedding")
    assert denial is not None and "gateway_key" in denial.message
    assert _refusal(guardrails, {"model": "m", "prompt": f"is {typo} a key?"}, mode="completion") is None


def test_deny_patterns_compiled_with_re2_block_by_rule_name() -> None:
    guardrails = Guardrails(secret_scan=False, deny_patterns=[("no-project-falcon",
                                                                re2.compile(r"(?i)project\s+falcon"))])
    denial = _refusal(guardrails, _chat("Tell me about Project  FALCON"))
    assert denial is not None and denial.code == "content_blocked" and "no-project-falcon" in denial.message
    assert _refusal(guardrails, _chat("Tell me about projects")) is None


@pytest.mark.parametrize("secret_scan", [True, False])
def test_a_lone_surrogate_is_a_400_not_a_crash(secret_scan: bool) -> None:
    guardrails = Guardrails(secret_scan=secret_scan, deny_patterns=[("x", re2.compile("x"))])
    denial = _refusal(guardrails, _chat("hello \ud800 world"))
    assert denial is not None and (denial.status, denial.code) == (400, "invalid_request")


AWS = "AKIAIOSFODNN7EXAMPLE"
SCANNED = {
    "a second message": ("chat", {"model": "m", "messages": [{"role": "user", "content": "Hi"},
                                                              {"role": "system", "content": f"key {AWS}"}]}),
    "a text part": ("chat", {"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": AWS}]}]}),
    "tool-call arguments": ("chat", {"model": "m", "messages": [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": f'{{"k": "{AWS}"}}'}}]},
    ]}),
    "a prompt": ("completion", {"model": "m", "prompt": f"x\n{AWS}\n"}),
    "a prompt list": ("completion", {"model": "m", "prompt": ["Hi", f"({AWS})"]}),
    "an input": ("embedding", {"model": "m", "input": f"\t{AWS}"}),
    "an input list": ("embedding", {"model": "m", "input": ["Hi", "Hi", AWS]}),
    "after a NUL": ("chat", _chat(f"\x00{AWS}\x00")),
    "inside JSON in the content": ("chat", _chat(f'{{"aws": "{AWS}"}}')),
    # The provider fetches an image URL: a secret in its query goes to whoever runs that host.
    "an image URL": ("chat", {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": f"https://images.example/cat.png?k={AWS}"}}]}]}),
}


@pytest.mark.parametrize("where", SCANNED)
def test_a_credential_anywhere_the_provider_would_read_is_refused(where: str) -> None:
    mode, body = SCANNED[where]
    denial = _refusal(_guardrails(), body, mode)
    assert denial is not None and denial.code == "secret_in_prompt" and "aws_access_key_id" in denial.message


@pytest.mark.parametrize("where", SCANNED)
def test_a_deny_pattern_applies_anywhere_the_provider_would_read(where: str) -> None:
    mode, body = SCANNED[where]
    guardrails = Guardrails(secret_scan=False, deny_patterns=[("no-aws-example", re2.compile("IOSFODNN7"))])
    denial = _refusal(guardrails, body, mode)
    assert denial is not None and denial.code == "content_blocked" and "no-aws-example" in denial.message


def test_with_secret_scanning_off_credentials_pass_and_deny_patterns_still_block() -> None:
    guardrails = Guardrails(secret_scan=False, deny_patterns=[("no-project-falcon",
                                                                re2.compile(r"(?i)project\s+falcon"))])
    assert _refusal(guardrails, _chat(f"key {AWS}")) is None
    denial = _refusal(guardrails, _chat(f"key {AWS} for Project Falcon"))
    assert denial is not None and denial.code == "content_blocked"


def test_the_first_matching_deny_rule_is_named() -> None:
    guardrails = Guardrails(secret_scan=False, deny_patterns=[("first", re2.compile("a")), ("second", re2.compile("b"))])
    denial = _refusal(guardrails, _chat("b then a"))
    assert denial is not None and "'first'" in denial.message
    denial = _refusal(guardrails, _chat("only b"))
    assert denial is not None and "'second'" in denial.message


def test_a_refusal_is_logged_with_its_reason_never_the_credential(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.guardrails"):
        denial = _refusal(_guardrails(), _chat(f"key {AWS}"))
    assert denial is not None and AWS not in denial.message
    (record,) = caplog.records
    assert (record.reason, record.key_id, record.request_id) == ("secret_in_prompt:aws_access_key_id", "key_1",  # type: ignore[attr-defined]
                                                                 "req_1")
    assert AWS not in caplog.text and AWS not in repr(record.__dict__)


def test_a_lone_surrogate_in_tool_arguments_is_a_400_not_a_crash() -> None:
    body = {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": "\ud800"}}]}]}
    denial = _refusal(_guardrails(), body)
    assert denial is not None and (denial.status, denial.code) == (400, "invalid_request")


def test_a_megabyte_of_prose_with_a_credential_at_its_end_is_refused() -> None:
    text = _fill(PROSE) * 11 + " " + AWS
    denial = _refusal(_guardrails(("no-project-falcon", r"(?i)project\s+falcon")), _chat(text))
    assert denial is not None and denial.code == "secret_in_prompt"
