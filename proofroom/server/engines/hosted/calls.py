"""One remote call: a timeout, retries with backoff on 429 and 5xx, and clear failures.

The vendors' SDKs can retry on their own, but each in its own way (google-genai through
tenacity without Retry-After, openai with its own schedule). Both are turned off and this
module retries instead, so both engines behave the same: a 429 or a 5xx is tried again after
the server's Retry-After (or Gemini's ``retryDelay``) when it gives one, else after an
exponential backoff; a timeout is not retried (a model that takes longer than the limit once
usually does again, and the person waiting has already waited the whole limit). While the
call runs and while it waits, ``check`` is called a few times a second, so a cancelled job
stops waiting at once (the abandoned request finishes in the background, bounded by the
timeout).

No message from here carries an API key: every text that leaves is passed through
``redact`` first, which blanks the values of the vendors' key variables.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..base import EngineError, JobCancelled

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variables whose values never appear in a message, a log line or provenance.
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")
#: How often (seconds) ``check`` runs while a call is in flight or waiting to be retried.
CHECK_INTERVAL = 0.1
#: HTTP statuses worth another try: rate limits, timeouts at the vendor, server errors.
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class HostedError(EngineError):
    """A hosted model's call failed; the message says why, in the vendor's words if any."""

    code = "hosted_error"


class HostedRefused(HostedError):
    """The model answered without an image: a safety block, a refusal, text only."""

    code = "hosted_refused"


class HostedTimeout(HostedError):
    """The model did not answer within the timeout."""

    code = "hosted_timeout"


class HostedUnavailable(HostedError):
    """The vendor kept answering 429 or 5xx, or asked to come back later than we wait."""

    code = "hosted_unavailable"


@dataclass(frozen=True)
class CallPolicy:
    """How long one call may take and how it is retried."""

    #: Seconds one attempt may take (the whole answer, not only the first byte).
    timeout_s: float = 120.0
    #: Attempts in all, the first included.
    attempts: int = 3
    #: First backoff (seconds) when the server gives no Retry-After; doubles each time.
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    #: A Retry-After longer than this fails the job now rather than holding it.
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.timeout_s > 0:
            raise EngineError(f"the hosted timeout must be positive, not {self.timeout_s}")
        if self.attempts < 1:
            raise EngineError(f"hosted calls need at least one attempt, not {self.attempts}")
        if self.backoff_s < 0 or self.max_backoff_s < 0 or self.max_retry_after_s < 0:
            raise EngineError("hosted backoff and Retry-After limits cannot be negative")

    @classmethod
    def from_settings(cls, settings: Any) -> CallPolicy:
        """The policy from the server's settings (``hosted_timeout``, ``hosted_attempts``,
        ``hosted_backoff``, ``hosted_max_retry_after``), defaults for those it lacks."""
        names = {
            "timeout_s": "hosted_timeout",
            "attempts": "hosted_attempts",
            "backoff_s": "hosted_backoff",
            "max_retry_after_s": "hosted_max_retry_after",
        }
        given = {
            field: getattr(settings, name)
            for field, name in names.items()
            if getattr(settings, name, None) is not None
        }
        return cls(**given)


@dataclass(frozen=True)
class Failure:
    """What went wrong with one attempt, as a vendor's classifier reads its SDK's error."""

    #: The vendor's words (an HTTP status line, the error message); redacted before use.
    message: str
    status: int | None = None
    retry_after: float | None = None
    timeout: bool = False
    #: A refusal (content policy): never retried, reported as HostedRefused.
    refused: bool = False
    #: A network error (connection refused, reset): retried like a 5xx.
    transient: bool = False

    @property
    def retriable(self) -> bool:
        return self.transient or (self.status in RETRY_STATUSES and not self.refused)


def redact(text: str) -> str:
    """``text`` without the value of any vendor key variable set in this environment."""
    for name in KEY_VARIABLES:
        value = os.environ.get(name, "").strip()
        if len(value) >= 4:
            text = text.replace(value, "[redacted]")
    return text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def parse_duration(value: Any) -> float | None:
    """Seconds from a protobuf Duration as JSON ("20s", "1.5s"); None if it is not one."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match.group(1))
    return None


def call_with_retries(
    vendor: str,
    attempt: Callable[[], T],
    classify: Callable[[BaseException], Failure | None],
    policy: CallPolicy,
    check: Callable[[], None],
    record: dict[str, Any],
) -> T:
    """``attempt()`` until it succeeds, a failure is final, or the attempts run out.

    ``classify`` reads an SDK's exception as a Failure (None: not an HTTP failure, which
    fails the job as an unreadable answer).
    ``check`` raises JobCancelled to stop. ``record`` gets ``attempts`` and ``retries``
    (status and wait of each retry) for provenance.
    """
    retries: list[dict[str, Any]] = []
    record["retries"] = retries
    for number in range(1, policy.attempts + 1):
        record["attempts"] = number
        try:
            return _cancellable(attempt, check)
        except (JobCancelled, EngineError):
            raise
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                # Not an HTTP failure: the SDK could not make sense of the answer (or of
                # the request). A clear job failure, never a stack trace to the room.
                words = redact(f"{type(exc).__name__}: {exc}")[:300]
                logger.warning("%s call failed: %s", vendor, words)
                raise HostedError(f"{vendor}'s answer could not be read ({words})") from None
        message = redact(failure.message)
        if failure.timeout:
            raise HostedTimeout(
                f"{vendor} did not answer within {policy.timeout_s:g} s ({message})"
            )
        if failure.refused:
            raise HostedRefused(f"{vendor} refused the edit: {message}")
        if not failure.retriable:
            hint = " (check the server's API key)" if failure.status in (401, 403) else ""
            raise HostedError(f"{vendor} rejected the request{hint}: {message}")
        if number == policy.attempts:
            raise HostedUnavailable(
                f"{vendor} failed {number} time{'s' if number > 1 else ''}; the last "
                f"answer: {message}"
            )
        wait, why = _wait(policy, number, failure)
        if wait > policy.max_retry_after_s:
            raise HostedUnavailable(
                f"{vendor} asks to retry after {wait:g} s, longer than the "
                f"{policy.max_retry_after_s:g} s a job waits: {message}"
            )
        retries.append({"status": failure.status, "wait_s": round(wait, 3), "why": why})
        logger.warning(
            "%s answered %s; retrying in %.1f s (%s; attempt %d of %d)",
            vendor,
            failure.status or "with a network error",
            wait,
            why,
            number + 1,
            policy.attempts,
        )
        _sleep(wait, check)
    raise AssertionError("unreachable")  # pragma: no cover


def _wait(policy: CallPolicy, number: int, failure: Failure) -> tuple[float, str]:
    if failure.retry_after is not None:
        return failure.retry_after, "the server's Retry-After"
    # Full jitter: concurrent jobs that were refused together do not return together.
    ceiling = min(policy.max_backoff_s, policy.backoff_s * 2 ** (number - 1))
    return random.uniform(ceiling / 2, ceiling), "backoff"


def _sleep(seconds: float, check: Callable[[], None]) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        check()
        time.sleep(min(CHECK_INTERVAL, left))
    check()


def _cancellable(attempt: Callable[[], T], check: Callable[[], None]) -> T:
    """Run ``attempt`` in a helper thread, calling ``check`` until it returns."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = attempt()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc
        finally:
            done.set()

    # A daemon: a cancelled job's abandoned request must not hold the process at exit.
    threading.Thread(target=run, name="hosted-call", daemon=True).start()
    while not done.wait(CHECK_INTERVAL):
        check()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
