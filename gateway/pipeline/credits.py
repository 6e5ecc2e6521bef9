"""Step: reserve the worst-case cost before the handoff, and settle the real cost after.

Settlement rules (threat-model TM-T9, TM-T10):

* complete response with the provider's usage → charge usage × price, release the rest;
* complete response without usage → charge the whole reservation (never under-charge);
* LiteLLM or the provider answered an error → release everything (providers do not bill failed calls), except a
  timeout after dispatch (408/504), charged in full as below: the provider may have run, and billed, the whole call;
* the client went away mid-stream → charge the whole reservation unless the usage chunk already arrived. The
  provider may keep generating (and billing) after we stop reading, up to max_tokens; the reservation is exactly that
  bound, so charging it cannot fall below what the provider bills;
* the process dies → the reservation stays open until the sweeper expires it (released, not charged).

A model with several deployments (threat-model TM-T17): the reservation is priced at the model's worst price (per kind
of token, the most any deployment charges); settlement prices the usage at the deployment that served (the last call
the approval check let through), and the log line names it. Calls before it ended in errors and are released like any
failed call; should one not have (the failure hook did not see it end), the whole reservation is charged.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.credits.ledger import InsufficientCredit, KeyCap, Ledger, LedgerUnavailable
from gateway.credits.pricing import MESSAGE_OVERHEAD_TOKENS, TOOL_OVERHEAD_TOKENS, Estimate, Price, estimate
from gateway.pipeline.approval import Approval
from gateway.pipeline.errors import Denial, service_unavailable
from gateway.pipeline.fields import RouteKind
from gateway.pipeline.responses import input_items
from gateway.pipeline.shaping import Shaped
from gateway.policy import ModelMode, Policy
from gateway.principal import Principal

log = logging.getLogger("gateway.credits")

# Error statuses after which a dispatched call is charged in full, with the reason the log line gives.
ABANDONING_STATUSES = {499: "client_gone_after_dispatch", 408: "upstream_timeout_after_dispatch",
                       504: "upstream_timeout_after_dispatch"}

REMAINING_HEADER = b"x-credit-remaining-micro-usd"

T = TypeVar("T")


class LedgerThreads:
    """The ledger's request-path writes (reserve, settle, release) run here, off the event loop: a slow store holds up
    the requests that wait on it, not every request in the process. As many threads as the store takes writers."""

    def __init__(self, writers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="ledger")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        # The context goes along, so log lines written there still carry the request id.
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)


# The events that end a Responses API stream, each with the final Response and its usage.
RESPONSE_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def _tokens(usage: dict[str, Any], *names: str) -> int | None:
    """The first of ``names`` present in ``usage`` as a count of tokens (a non-negative integer), or None if it is
    missing or is anything else."""
    for name in names:
        value = usage.get(name)
        if value is None:
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
    return None


class Meter:
    """Watches one response from LiteLLM and closes the request's reservation exactly once."""

    def __init__(self, ledger: Ledger, request_id: str, key_id: str, price: Price, amount: int, available: int,
                 mode: ModelMode, threads: LedgerThreads, deployment_prices: Mapping[str, Price] | None = None) -> None:
        self._ledger = ledger
        self._threads = threads
        self.request_id = request_id
        self._key_id = key_id
        self._price = price  # the reservation's price; settles usage when no deployment price applies
        self._deployment_prices = deployment_prices or {}  # by deployment label
        self._approval: Approval | None = None
        self.amount = amount
        self.available = available  # the account's available credit after the reservation
        self._mode = mode
        self._failed = False
        self._abandoned: str | None = None  # why the whole reservation is charged after an error, if it is
        self._completed = False
        self._usage: dict[str, Any] | None = None
        self._tail = b""
        self._started = False
        self._closing = threading.Lock()  # taken once, never released: the first finish() is the only one

    # --- observations --------------------------------------------------------------------------------------------

    def attach(self, approval: Approval) -> None:
        """The request's approval, whose record of provider calls says which deployment served."""
        self._approval = approval

    @property
    def served_by(self) -> str | None:
        return None if self._approval is None else self._approval.served_by

    def started(self) -> None:
        """LiteLLM began a successful response (status < 400)."""
        self._started = True

    def failed(self, status: int, dispatched: bool) -> None:
        """LiteLLM answered an error status. ``dispatched``: the approval check had passed, so the provider was (or was
        about to be) called."""
        self._failed = True
        # 499: the client left; 408/504: the provider did not answer in time (LiteLLM stopped waiting, or the
        # provider's own front gave up). If the call had gone out, the provider may bill it up to its bound, and a
        # client can make a call time out at will (a long answer), so it is charged, not released (threat-model TM-T9).
        if dispatched and status in ABANDONING_STATUSES:
            self._abandoned = ABANDONING_STATUSES[status]

    def observe_json(self, body: bytes) -> None:
        self._completed = True
        try:
            usage = json.loads(body).get("usage")
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict):
            self._usage = usage

    @staticmethod
    def _event_usage(event: Any) -> dict[str, Any] | None:
        """The usage a stream event carries: chat's usage chunk (``usage.prompt_tokens``), or the Response of the
        Responses API's last event (``response.usage.input_tokens``), which ends a stream as ``response.completed``,
        ``response.incomplete`` (the output bound was reached) or ``response.failed``."""
        if not isinstance(event, dict):
            return None
        usage = event.get("usage")
        if isinstance(usage, dict) and usage.get("prompt_tokens") is not None:
            return usage
        response = event.get("response")
        if event.get("type") in RESPONSE_FINAL_EVENTS and isinstance(response, dict):
            usage = response.get("usage")
            if isinstance(usage, dict) and usage.get("input_tokens") is not None:
                return usage
        return None

    def observe_stream(self, chunk: bytes, more_body: bool) -> None:
        data = self._tail + chunk
        lines = data.split(b"\n")
        self._tail = lines.pop() if more_body else b""
        for line in lines:
            if line.startswith(b"data: {") and b'"usage"' in line:
                try:
                    usage = self._event_usage(json.loads(line[6:]))
                except ValueError:
                    continue
                if usage is not None:
                    self._usage = usage
        if not more_body:
            self._completed = True

    # --- closing -------------------------------------------------------------------------------------------------

    def _charge(self) -> tuple[int, str]:
        attempts = [] if self._approval is None else self._approval.attempts
        if any(not attempt.failed for attempt in attempts[:-1]):
            # A call before the one that served was not seen to fail: it may have been billed too. The whole
            # reservation, never a guess below it.
            return self.amount, "unexplained_retry"
        if self._usage is not None:
            # Chat and completions name them prompt/completion tokens, the Responses API input/output tokens.
            prompt = _tokens(self._usage, "prompt_tokens", "input_tokens")
            completion = 0 if self._mode == "embedding" else _tokens(self._usage, "completion_tokens", "output_tokens")
            # Anthropic's prompt-cache tokens, which LiteLLM reports inside prompt_tokens and also on their own.
            cache_write = _tokens(self._usage, "cache_creation_input_tokens") if "cache_creation_input_tokens" \
                in self._usage else 0
            cache_read = _tokens(self._usage, "cache_read_input_tokens") if "cache_read_input_tokens" \
                in self._usage else 0
            if prompt is None or completion is None or cache_write is None or cache_read is None:
                # Usage the gateway cannot read is no usage: the whole reservation, never a guess below it.
                log.warning("unreadable usage", extra={"request_id": self.request_id, "reason": "bad_usage"})
                return self.amount, "bad_usage"
            price = self._deployment_prices.get(self.served_by or "", self._price)
            try:
                return price.cost(prompt, completion, cache_write, cache_read), "usage"
            except ValueError:
                log.warning("unreadable usage", extra={"request_id": self.request_id, "reason": "bad_usage"})
                return self.amount, "bad_usage"
        if self._completed:
            return self.amount, "no_usage"
        return self.amount, "client_gone"

    @property
    def closed(self) -> bool:
        return self._closing.locked()

    async def finish_off_loop(self) -> int | None:
        """:meth:`finish` on a worker thread. If this task is cancelled meanwhile, the thread still completes the
        settlement; nothing is left open."""
        if self.closed:
            return None
        return await self._threads.run(self.finish)

    def finish(self) -> int | None:
        """Settle or release; returns the available credit after, when known. Safe to call more than once, from any
        thread: only the first call writes."""
        if not self._closing.acquire(blocking=False):
            return None
        try:
            if self._abandoned:
                log.warning("charged the full reservation", extra={"request_id": self.request_id,
                                                                   "key_id": self._key_id,
                                                                   "reason": self._abandoned})
                return self._ledger.settle(self.request_id, self.amount)
            if self._failed or not self._started:
                self._ledger.release(self.request_id, "upstream_error" if self._failed else "no_response")
                return None
            charge, basis = self._charge()
            if basis != "usage":
                log.warning("charged the full reservation", extra={"request_id": self.request_id,
                                                                   "key_id": self._key_id, "reason": basis,
                                                                   "deployment": self.served_by})
            else:
                # Which deployment served, by provider name and upstream model (never a credential), and after how
                # many calls.
                calls = len(self._approval.attempts) if self._approval is not None else 1
                log.info("settled", extra={"request_id": self.request_id, "key_id": self._key_id,
                                           "deployment": self.served_by, "outcome": f"charged={charge} calls={calls}"})
            return self._ledger.settle(self.request_id, charge)
        except LedgerUnavailable:
            # The reservation stays open; the sweeper closes it after the TTL (released, not charged).
            log.error("settlement failed; left to the sweeper", extra={"request_id": self.request_id})
            return None


# The key cap's period as the refusal names it (the cap starts over at the start of each UTC day or month).
_CAP_PERIOD_WORDS = {"daily": "daily spend cap (today, UTC)", "monthly": "monthly spend cap (this month, UTC)",
                     "none": "spend cap (it does not reset)"}


def refusal_message(short: InsufficientCredit, mode: RouteKind) -> str:
    """The 402's text: which limit refused, what the worst case needed and what that limit had left (both the
    caller's own figures, integer micro-USD), and how to ask for less. The worst case counts every output token the
    request may produce: max_tokens, or the model's cap when the client sets none."""
    if short.scope == "key_cap":
        limit = "this key's " + _CAP_PERIOD_WORDS.get(short.period or "none", "spend cap")
    else:
        limit = "the account"
    hint = ("A shorter input lowers the reservation." if mode == "embedding" else
            "A smaller max_output_tokens lowers the reservation; without it, the model's whole output limit is "
            "reserved." if mode == "responses" else
            "A smaller max_tokens (or max_completion_tokens) lowers the reservation; without either, the model's "
            "whole output limit is reserved.")
    return (f"Not enough credit for this request: its worst case needs {short.needed} micro-USD and {limit} has "
            f"{short.available} micro-USD available. {hint}")


class CreditStep:
    def __init__(self, ledger: Ledger, prices: dict[str, Price], policy: Policy,
                 deployment_prices: Mapping[str, Mapping[str, Price]] | None = None) -> None:
        self._ledger = ledger
        self._prices = prices  # per model: the reservation's (worst) price
        self._deployment_prices = deployment_prices or {}  # per model, per deployment label: what settlement charges
        self._policy = policy
        self.threads = LedgerThreads(ledger.writers)

    def estimate(self, shaped: Shaped, raw_length: int, model_name: str, kind: RouteKind | None = None) -> Estimate:
        """The worst case of the shaped request at this model's prices."""
        model = self._policy.model(model_name)
        image_tokens = shaped.images * (model.max_image_tokens or 0)
        if kind == "responses":
            # The chat bound with the Responses API's items in place of messages: the body's bytes, plus the
            # per-message overhead for each input item (and the instructions) and the per-tool overhead.
            tools = shaped.body.get("tools") or []
            overhead = MESSAGE_OVERHEAD_TOKENS * (input_items(shaped.body) + 1) + TOOL_OVERHEAD_TOKENS * len(tools)
            return estimate("completion", shaped.body, raw_length, self._prices[model_name], shaped.output_bound,
                            1, image_tokens + overhead)
        return estimate(model.mode, shaped.body, raw_length, self._prices[model_name], shaped.output_bound,
                        shaped.choices, image_tokens)

    def reserve(self, worst: Estimate, principal: Principal, model_name: str, request_id: str,
                kind: RouteKind | None = None) -> Meter:
        """Reserve the worst case; returns the meter that will settle it. ``kind``: the route, when it is not the
        model's own mode (the Responses API), for the refusal's hint."""
        model = self._policy.model(model_name)
        price = self._prices[model_name]
        if principal.account_id is None:
            raise Denial(402, "budget_exhausted", "This key has no credit account.", error_type="insufficient_quota")
        amount = max(worst.amount, 1)
        cap = KeyCap(principal.spend_cap_micro_usd, principal.spend_cap_period) \
            if principal.spend_cap_micro_usd is not None else None
        try:
            available = self._ledger.reserve(request_id=request_id, account_id=principal.account_id,
                                             key_id=principal.key_id, amount=amount, cap=cap)
        except InsufficientCredit as short:
            log.info("budget exhausted", extra={"request_id": request_id, "key_id": principal.key_id,
                                                "reason": f"budget_{short.scope}"})
            raise Denial(402, "budget_exhausted", refusal_message(short, kind or model.mode),
                         error_type="insufficient_quota") from None
        except LedgerUnavailable:
            raise service_unavailable() from None
        return Meter(self._ledger, request_id, principal.key_id, price, amount, available, model.mode, self.threads,
                     self._deployment_prices.get(model_name))
