"""The Probes port on CloudWatch (alarm states) and HTTP (health checks).

Both are asked just before an attack runs, and each answers or raises ProbeFailed with a
one-line reason: the stop-condition guard then refuses (fails closed). boto3 and requests
are imported when a probe is first asked, not when the engine is built: the API Lambda,
which builds the engine but never runs an attack, stays free of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from chalicelib.domain.errors import ProbeFailed, clip
from chalicelib.plugins.secret_policy import OutboundPolicy

if TYPE_CHECKING:
    from chalicelib.adapters.http import Resolver

# What DescribeAlarms returns for names that exist. Without AlarmTypes it answers only
# metric alarms, "even if composite alarms exist in the account":
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html
ALARM_TYPES = ["MetricAlarm", "CompositeAlarm"]
# DescribeAlarms takes at most 100 alarm names per request (same page).
NAMES_PER_REQUEST = 100


def _target(url: str) -> str:
    """Scheme, host and port of ``url``: its path or query may hold a token."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return "an unreadable URL"
    return clip(f"{parts.scheme}://{parts.hostname or ''}:{port}", 120)


class AwsProbes:
    """Stop conditions asked of CloudWatch (the engine's region, or ``endpoint_url``) and
    of HTTP endpoints through the outbound guard."""

    def __init__(
        self,
        region: str | None,
        outbound: OutboundPolicy,
        endpoint_url: str | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.region = region
        self.outbound = outbound
        self.endpoint_url = endpoint_url
        # Tests stand a resolver in for DNS (adapters.http.system_resolver by default).
        self.resolve = resolve
        self._client: Any = None
        self._lock = threading.Lock()

    def _cloudwatch(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                # Bounded: the probe runs before the claim, in the attack Lambda's time.
                config = Config(
                    retries={"mode": "standard", "total_max_attempts": 2},
                    connect_timeout=3,
                    read_timeout=5,
                )
                self._client = boto3.client(
                    "cloudwatch",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=config,
                )
            return self._client

    def alarms_in_alarm(self, names: Sequence[str]) -> list[str]:
        """Those of ``names`` in ALARM, in the order given; ProbeFailed when one does not
        exist (a typo must not pass as "not in alarm") or the states cannot be read."""
        if not names:
            return []
        from botocore.exceptions import BotoCoreError, ClientError

        states: dict[str, str] = {}
        wanted = list(dict.fromkeys(names))
        try:
            client = self._cloudwatch()
            for start in range(0, len(wanted), NAMES_PER_REQUEST):
                request = {
                    "AlarmNames": wanted[start : start + NAMES_PER_REQUEST],
                    "AlarmTypes": ALARM_TYPES,
                }
                for page in client.get_paginator("describe_alarms").paginate(**request):
                    for kind in ("MetricAlarms", "CompositeAlarms"):
                        for alarm in page.get(kind) or ():
                            states[str(alarm["AlarmName"])] = str(alarm["StateValue"])
        except (BotoCoreError, ClientError) as error:
            raise ProbeFailed(f"CloudWatch alarms could not be read: {clip(str(error))}") from None
        missing = [name for name in wanted if name not in states]
        if missing:
            quoted = ", ".join(repr(clip(name, 120)) for name in missing)
            raise ProbeFailed(f"no CloudWatch alarm named {quoted} in {self.region}")
        return [name for name in wanted if states[name] == "ALARM"]

    def health_status(self, url: str, timeout: float) -> int:
        """The status a GET of ``url`` answers within ``timeout`` seconds (the whole
        answer's head, not each read), redirects not followed, through the outbound
        guard; ProbeFailed when it is refused, unreachable or too slow."""
        import requests

        from chalicelib.adapters.http import OutboundRefused, guard_session

        # A literal link-local or metadata address is refused before any lookup.
        refusal = self.outbound.literal_refusal(url)
        if refusal is not None:
            raise ProbeFailed(f"not sent to {_target(url)}: {refusal}")
        started = time.monotonic()
        try:
            with (
                guard_session(requests.Session(), self.outbound, self.resolve) as session,
                session.get(url, timeout=timeout, allow_redirects=False, stream=True) as answer,
            ):
                status = int(answer.status_code)
        except OutboundRefused as refused:
            raise ProbeFailed(str(refused)) from None
        except requests.Timeout:
            raise ProbeFailed(f"no answer within {timeout:g} s") from None
        except (requests.RequestException, OSError) as error:
            # The type only: requests' messages quote the whole URL (a query may hold a token).
            raise ProbeFailed(f"no connection ({type(error).__name__})") from None
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            # requests' timeout bounds each read; a server that trickles its head is slow.
            raise ProbeFailed(f"answered after {elapsed:.1f} s, over {timeout:g} s")
        return status
