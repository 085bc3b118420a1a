"""HTTP requests for attacks, through requests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    elapsed_ms: int


def send_json(
    method: str, url: str, headers: dict[str, str], payload: Any, timeout: float
) -> HttpAnswer:
    """Send one request, the payload (if any) as a JSON body; never follow redirects."""
    started = time.monotonic()
    response = requests.request(
        method,
        url,
        headers=headers,
        json=payload,
        timeout=timeout,
        allow_redirects=False,
    )
    elapsed_ms = int((time.monotonic() - started) * 1000)
    response.close()
    return HttpAnswer(status_code=response.status_code, elapsed_ms=elapsed_ms)
