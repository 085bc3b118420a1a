"""Secret references resolve from env, SSM and Secrets Manager, and never reach the logs."""

from __future__ import annotations

import json
import logging

import boto3
import pytest

from chalicelib.adapters.secrets import SecretError, describe, resolve_secret

SECRET = "s3cr3t-value-do-not-log"


def test_env_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_SECRET", SECRET)
    assert resolve_secret({"env": "CME_TEST_SECRET"}) == SECRET
    monkeypatch.delenv("CME_TEST_SECRET")
    with pytest.raises(SecretError, match="environment variable CME_TEST_SECRET is not set"):
        resolve_secret({"env": "CME_TEST_SECRET"})


def test_ssm_and_secrets_manager_never_log_the_value(
    aws: None, caplog: pytest.LogCaptureFixture
) -> None:
    boto3.client("ssm").put_parameter(Name="/chaos/key", Value=SECRET, Type="SecureString")
    boto3.client("secretsmanager").create_secret(
        Name="chaos", SecretString=json.dumps({"pem": SECRET})
    )
    with caplog.at_level(logging.DEBUG):
        assert resolve_secret({"ssm": "/chaos/key"}) == SECRET
        assert resolve_secret({"secretsmanager": "chaos", "key": "pem"}) == SECRET
    assert caplog.records, "botocore logs at DEBUG; the check below must see them"
    assert all(SECRET not in record.getMessage() for record in caplog.records)


def test_missing_secrets_name_the_reference_not_a_value(aws: None) -> None:
    with pytest.raises(SecretError, match="SSM parameter /nope could not be read"):
        resolve_secret({"ssm": "/nope"})
    boto3.client("secretsmanager").create_secret(Name="plain", SecretString="x")
    with pytest.raises(SecretError, match="has no field 'pem'"):
        resolve_secret({"secretsmanager": "plain", "key": "pem"})
    assert describe({"secretsmanager": "plain", "key": "pem"}) == (
        "Secrets Manager secret plain (key pem)"
    )
