"""API Gateway's own answers are fixed JSON: nothing of the caller's request echoed."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))
import merge  # noqa: E402

# The answers API Gateway builds from $context.error.message, which quotes a malformed
# Authorization header ("Authorization=..." in INCOMPLETE_SIGNATURE), plus the defaults.
# https://docs.aws.amazon.com/apigateway/latest/developerguide/supported-gateway-response-types.html
MUST_BE_FIXED = {
    "MISSING_AUTHENTICATION_TOKEN",
    "INCOMPLETE_SIGNATURE",
    "INVALID_SIGNATURE",
    "EXPIRED_TOKEN",
    "ACCESS_DENIED",
    "INVALID_API_KEY",
    "DEFAULT_4XX",
    "DEFAULT_5XX",
}


@pytest.fixture(scope="module")
def responses() -> dict[str, Any]:
    template = merge.merged("dev")
    return dict(template["Resources"]["RestAPI"]["Properties"]["GatewayResponses"])


def test_every_answer_that_could_echo_the_request_is_replaced(responses: dict[str, Any]) -> None:
    assert set(responses) >= MUST_BE_FIXED


@pytest.mark.parametrize("kind", sorted(MUST_BE_FIXED))
def test_each_answer_is_a_fixed_msg_without_context_variables(
    responses: dict[str, Any], kind: str
) -> None:
    template = responses[kind]["ResponseTemplates"]["application/json"]
    assert "$" not in template, "no $context / $input: nothing of the request is echoed"
    body = json.loads(template)
    assert set(body) == {"msg"} and body["msg"]
