"""The Notifier port: small JSON messages to a webhook and/or an SNS topic, never raising.

A notification is a courtesy, never part of an outcome: every failure (refused by the
outbound guard, unreachable, slow, an error status, SNS refusing) is logged as a warning
and dropped. Log lines never show a secret the settings may hold: a webhook URL is shown
as its scheme and host, its userinfo masked by ``domain.redaction`` and its path and query
(where webhook services put their tokens) replaced by ``<redacted>``.

``BackgroundNotifier`` sends from one worker thread, in order, so that a slow webhook
never delays an attack; ``flush`` waits for what is queued (the attack Lambda calls it
before returning, since a frozen Lambda runs no thread).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from chalicelib.adapters.http import OutboundRefused, Resolver, send_json
from chalicelib.domain.ports import Notifier
from chalicelib.domain.redaction import REDACTED, redact_text
from chalicelib.plugins.secret_policy import OutboundPolicy

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_SECONDS = 3.0
SNS_TIMEOUT_SECONDS = 3.0
# Messages waiting for the worker; past this, new ones are dropped (and logged).
QUEUE_SIZE = 1000
USER_AGENT = "chaos-monkey-engine"


def shown_url(url: str) -> str:
    """``url`` as a log line may show it: scheme and host, userinfo masked, path and
    query replaced (a webhook's path is often its token)."""
    parts = urlsplit(url)
    origin = redact_text(f"{parts.scheme}://{parts.netloc}")
    if parts.path.strip("/") or parts.query or parts.fragment:
        return f"{origin}/{REDACTED}"
    return origin


def scrubbed(text: str, url: str) -> str:
    """An error message about a request to ``url``, with every part of the URL that may
    be secret masked (requests quotes the path and query in its errors)."""
    parts = urlsplit(url)
    secrets = {url, parts.netloc if "@" in parts.netloc else ""}
    if parts.path.strip("/") or parts.query:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        secrets |= {target, parts.path if parts.path.strip("/") else "", parts.query}
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return redact_text(text)


class WebhookNotifier:
    """POSTs each message as JSON to a URL, through the outbound guard, no redirects."""

    def __init__(
        self,
        url: str,
        policy: OutboundPolicy,
        timeout: float = WEBHOOK_TIMEOUT_SECONDS,
        *,
        resolve: Resolver | None = None,
    ) -> None:
        self.url = url
        self.policy = policy
        self.timeout = timeout
        self._resolve = resolve  # a seam for tests; None: the system resolver

    def __repr__(self) -> str:
        return f"WebhookNotifier({shown_url(self.url)})"

    def send(self, message: dict[str, Any]) -> None:
        fields = {"webhook": shown_url(self.url), "kind": message.get("kind")}
        try:
            answer = send_json(
                "POST",
                self.url,
                {"User-Agent": USER_AGENT},
                message,
                self.timeout,
                policy=self.policy,
                resolve=self._resolve,
            )
        except OutboundRefused as error:
            # The guard's message names scheme, host and port only.
            log.warning("notification not sent: %s", error, extra={**fields, "error": str(error)})
            return
        except Exception as error:  # a notification never raises
            reason = f"{type(error).__name__}: {scrubbed(str(error), self.url)}"
            log.warning("notification failed: %s", reason, extra={**fields, "error": reason})
            return
        if not 200 <= answer.status_code < 300:
            # A redirect is not followed either: the engine posts where it was told only.
            reason = f"the webhook answered HTTP {answer.status_code}"
            log.warning("notification failed: %s", reason, extra={**fields, "error": reason})


class SnsNotifier:
    """Publishes each message (JSON) to an SNS topic; the client is made on first use."""

    def __init__(
        self,
        topic_arn: str,
        region: str | None,
        *,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self.topic_arn = topic_arn
        self.region = region
        self._client_factory = client_factory or self._default_client
        self._client: Any = None
        self._lock = threading.Lock()

    def _default_client(self) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=SNS_TIMEOUT_SECONDS,
            read_timeout=SNS_TIMEOUT_SECONDS,
            retries={"mode": "standard", "total_max_attempts": 2},
        )
        # The topic's own region: an ARN names it (arn:aws:sns:REGION:ACCOUNT:NAME).
        parts = self.topic_arn.split(":")
        region = parts[3] if len(parts) > 3 and parts[3] else self.region
        return boto3.client("sns", region_name=region, config=config)

    def send(self, message: dict[str, Any]) -> None:
        try:
            with self._lock:
                if self._client is None:
                    self._client = self._client_factory()
                client = self._client
            client.publish(
                TopicArn=self.topic_arn,
                Message=json.dumps(message, default=str),
                # Lets a subscription filter by kind (SNS subscription filter policies).
                MessageAttributes={
                    "kind": {"DataType": "String", "StringValue": str(message.get("kind", ""))}
                },
            )
        except Exception as error:  # a notification never raises
            reason = f"{type(error).__name__}: {redact_text(str(error))}"
            log.warning(
                "notification failed: %s",
                reason,
                extra={"topic_arn": self.topic_arn, "kind": message.get("kind"), "error": reason},
            )


class FanOutNotifier:
    """Sends each message to every notifier, one failing never stopping the others."""

    def __init__(self, notifiers: Sequence[Notifier]) -> None:
        self.notifiers = tuple(notifiers)

    def send(self, message: dict[str, Any]) -> None:
        for notifier in self.notifiers:
            try:
                notifier.send(message)
            except Exception:  # a notifier broke its contract: still go on
                log.warning(
                    "a notifier raised",
                    extra={"notifier": type(notifier).__name__, "kind": message.get("kind")},
                )


class BackgroundNotifier:
    """Sends through ``inner`` from one worker thread, in the order messages came."""

    def __init__(self, inner: Notifier, size: int = QUEUE_SIZE) -> None:
        self.inner = inner
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(size)
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        self._start()
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            log.warning(
                "notification dropped: too many queued", extra={"kind": message.get("kind")}
            )

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued message to be sent (or to
        fail); False when some are still waiting."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, name="cme-notify-flush", daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (within ``timeout``) and stop the worker."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(timeout)

    def _start(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="cme-notify", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                if message is None:
                    return
                self.inner.send(message)
            except Exception:  # keep the worker alive
                log.warning("a notifier raised", extra={"kind": (message or {}).get("kind")})
            finally:
                self._queue.task_done()
