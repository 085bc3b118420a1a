"""Secret references in attack configs, resolved at run time and never stored resolved.

A plan never holds a secret inline (except the 2017 inline ``pem``); it holds a
reference, one of:

- ``{"env": "NAME"}``: the environment variable NAME of the attack's process;
- ``{"ssm": "/path/to/parameter"}``: an SSM Parameter Store (SecureString) value;
- ``{"secretsmanager": "name-or-arn", "key": "field"}``: a Secrets Manager secret, or
  one field of it when the secret is a JSON object and ``key`` is given.

Only the references the operator's ``SecretPolicy`` allows resolve (checked at plan time
and again here), and every value resolved during a run is recorded in the run's
``SecretVault`` so that the runner scrubs it from what it stores.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from chalicelib.plugins.secret_policy import SecretPolicy, SecretVault

if TYPE_CHECKING:
    from chalicelib.plugins.contract import AttackContext

SECRET_REFERENCE_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}},
            "required": ["env"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {"ssm": {"type": "string", "minLength": 1}},
            "required": ["ssm"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "secretsmanager": {"type": "string", "minLength": 1},
                "key": {"type": "string", "minLength": 1},
            },
            "required": ["secretsmanager"],
            "additionalProperties": False,
        },
    ]
}


class SecretError(Exception):
    """A secret reference that could not be resolved. The message never holds the value."""


def describe(reference: dict[str, Any]) -> str:
    """A safe, loggable name for a reference (never its value)."""
    if "env" in reference:
        return f"environment variable {reference['env']}"
    if "ssm" in reference:
        return f"SSM parameter {reference['ssm']}"
    if "secretsmanager" in reference:
        key = f" (key {reference['key']})" if reference.get("key") else ""
        return f"Secrets Manager secret {reference['secretsmanager']}{key}"
    return "an unknown secret reference"


def resolve_secret(
    reference: dict[str, Any],
    region: str | None = None,
    *,
    policy: SecretPolicy | None = None,
    vault: SecretVault | None = None,
) -> str:
    """The secret a reference names; SecretError (naming the reference) if it cannot.

    A reference outside ``policy`` (None: the default policy, never "anything") is
    refused before anything is read; the value is recorded in ``vault`` when given.
    """
    if not isinstance(reference, dict):
        raise SecretError("a secret reference must be an object")
    refusal = (policy or SecretPolicy()).refusal(reference)
    if refusal is not None:
        raise SecretError(f"not resolved: {refusal}")
    if "env" in reference:
        value = os.environ.get(str(reference["env"]))
        if value is None:
            raise SecretError(f"{describe(reference)} is not set")
    elif "ssm" in reference:
        value = _from_ssm(reference, region)
    else:
        value = _from_secrets_manager(reference, region)
    return vault.record(value) if vault is not None else value


def resolver(context: AttackContext, region: str | None) -> Callable[[dict[str, Any]], str]:
    """``resolve_secret`` for one attack run: its engine's policy, its run's vault."""

    def resolve(reference: dict[str, Any]) -> str:
        return resolve_secret(
            reference,
            region,
            policy=context.environment.secret_policy,
            vault=context.secrets,
        )

    return resolve


class _WithoutResponseBodies(logging.Filter):
    """Drops botocore's DEBUG dumps of API responses: for SSM and Secrets Manager they
    hold the secret itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.INFO


_BODY_FILTER = _WithoutResponseBodies()


def _client(service: str, region: str | None) -> Any:
    import boto3

    for name in ("botocore.parsers", "botocore.endpoint"):
        logger = logging.getLogger(name)
        if _BODY_FILTER not in logger.filters:
            logger.addFilter(_BODY_FILTER)
    # region None: the AWS chain's (AWS_DEFAULT_REGION, the profile's...).
    return boto3.client(service, region_name=region)


def _from_ssm(reference: dict[str, Any], region: str | None) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _client("ssm", region).get_parameter(Name=reference["ssm"], WithDecryption=True)
    except (BotoCoreError, ClientError) as error:
        raise SecretError(f"{describe(reference)} could not be read: {error}") from None
    return str(answer["Parameter"]["Value"])


def _from_secrets_manager(reference: dict[str, Any], region: str | None) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = _client("secretsmanager", region).get_secret_value(
            SecretId=reference["secretsmanager"]
        )
    except (BotoCoreError, ClientError) as error:
        raise SecretError(f"{describe(reference)} could not be read: {error}") from None
    value = answer.get("SecretString")
    if value is None:
        raise SecretError(f"{describe(reference)} is binary; a string secret is needed")
    key = reference.get("key")
    if not key:
        return str(value)
    try:
        return str(json.loads(value)[key])
    except (ValueError, KeyError, TypeError):
        raise SecretError(f"{describe(reference)} has no field {key!r}") from None
