"""Secret references resolve from env, SSM and Secrets Manager, and never reach the logs."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from chalicelib.adapters.secrets import SecretError, describe, resolve_secret

SECRET = "s3cr3t-value-do-not-log"


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_SECRET_TEST", SECRET)
    assert resolve_secret({"env": "CME_SECRET_TEST"}) == SECRET
    monkeypatch.delenv("CME_SECRET_TEST")
    with pytest.raises(SecretError, match="environment variable CME_SECRET_TEST is not set"):
        resolve_secret({"env": "CME_SECRET_TEST"})


def test_ssm_and_secrets_manager_never_log_the_value(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    boto3.client("ssm").put_parameter(
        Name="/chaos-monkey-engine/key", Value=SECRET, Type="SecureString"
    )
    boto3.client("secretsmanager").create_secret(
        Name="chaos-monkey-engine/chaos", SecretString=json.dumps({"pem": SECRET})
    )
    with caplog.at_level(logging.DEBUG):
        assert resolve_secret({"ssm": "/chaos-monkey-engine/key"}) == SECRET
        assert (
            resolve_secret({"secretsmanager": "chaos-monkey-engine/chaos", "key": "pem"}) == SECRET
        )
    assert caplog.records, "botocore logs at DEBUG; the check below must see them"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_missing_secrets_name_the_reference_not_a_value(aws: None) -> None:
    with pytest.raises(SecretError, match="SSM parameter /chaos-monkey-engine/nope could not"):
        resolve_secret({"ssm": "/chaos-monkey-engine/nope"})
    name = "chaos-monkey-engine/plain"
    boto3.client("secretsmanager").create_secret(Name=name, SecretString="x")
    with pytest.raises(SecretError, match="has no field 'pem'"):
        resolve_secret({"secretsmanager": name, "key": "pem"})
    assert describe({"secretsmanager": "plain", "key": "pem"}) == (
        "Secrets Manager secret plain (key pem)"
    )
