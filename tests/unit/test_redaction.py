"""Secrets masked by name and by value (chalicelib/domain/redaction.py), and in log lines."""

from __future__ import annotations

import logging
import re

import pytest

from attacks import _node_attack
from chalicelib import logfmt
from chalicelib.domain.errors import clip, shown
from chalicelib.domain.redaction import (
    REDACTED,
    SENSITIVE_NAME_PATTERN,
    is_sensitive,
    redact,
    redact_text,
)


@pytest.mark.parametrize(
    "name",
    [
        "password",
        "PASSWORD",
        "db_Password",
        "passwd",
        "pass",
        "db-pass",
        "Secret",
        "client_secret",
        "token",
        "X-Auth-Token",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "Authorization",
        "cookie",
        "Set-Cookie",
        "credentials",
        "private_key",
        "pem",
        "passphrase",
        "session",
        "signature",
        "X-Amz-Security-Token",
        "aws_secret_access_key",
        "access_key",
    ],
)
def test_sensitive_names_match_in_any_case(name: str) -> None:
    assert is_sensitive(name)
    assert redact({name: "s3cr3t"}) == {name: REDACTED}


@pytest.mark.parametrize(
    "name", ["user", "host", "author", "compass", "key", "private_ip", "name", "region", "path"]
)
def test_ordinary_names_are_not_sensitive(name: str) -> None:
    assert not is_sensitive(name)
    assert redact({name: "shown"}) == {name: "shown"}


def test_the_node_attacks_use_the_same_list() -> None:
    assert _node_attack.CONFIDENTIAL_NAMES == SENSITIVE_NAME_PATTERN
    patterns = _node_attack.DRIVER_ARGS_SCHEMA["patternProperties"]
    assert list(patterns) == [SENSITIVE_NAME_PATTERN]
    assert re.search(SENSITIVE_NAME_PATTERN, "Client_Secret")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:hunter2@host/x", f"https://user:{REDACTED}@host/x"),
        ("ssh://root:p@ss@10.0.0.1:22/", f"ssh://root:{REDACTED}@10.0.0.1:22/"),
        ("https://ghp_tok3n@github.com/o/r.git", f"https://{REDACTED}@github.com/o/r.git"),
        ("see http://u:pw@h/a and http://v:pw2@k/b", f"see http://u:{REDACTED}@h/a and "
         f"http://v:{REDACTED}@k/b"),
    ],
)  # fmt: skip
def test_url_userinfo_is_masked(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_sensitive_query_parameters_are_masked_and_the_others_kept() -> None:
    text = "GET http://h/x?token=abc&q=1&API_KEY=k&X-Amz-Signature=s&page=2 failed"
    assert redact_text(text) == (
        f"GET http://h/x?token={REDACTED}&q=1&API_KEY={REDACTED}"
        f"&X-Amz-Signature={REDACTED}&page=2 failed"
    )


def test_pairs_headers_and_bearer_credentials_in_messages_are_masked() -> None:
    assert redact_text("{'password': 'hunter2', 'user': 'u'}") == (
        f"{{'password': '{REDACTED}', 'user': 'u'}}"
    )
    assert redact_text('{"Token": "abc", "q": "1"}') == f'{{"Token": "{REDACTED}", "q": "1"}}'
    assert redact_text("X-Api-Key: abc\nAccept: */*") == f"X-Api-Key: {REDACTED}\nAccept: */*"
    assert redact_text("sent Bearer eyJhbGciOi.x.y") == f"sent Bearer {REDACTED}"


def test_nested_values_are_masked_by_name_and_by_value_at_any_depth() -> None:
    config = {
        "ssh": {"user": "root", "PEM": "-----BEGIN", "key": {"ssm": "/k"}},
        "hosts": [{"password": "p", "host": "h"}],
        "calls": [["http://u:hunter2@h/x?token=abc&q=1"]],
        "pair": ("http://u:hunter2@h/", 3),
    }
    assert redact(config) == {
        "ssh": {"user": "root", "PEM": REDACTED, "key": {"ssm": "/k"}},
        "hosts": [{"password": REDACTED, "host": "h"}],
        "calls": [[f"http://u:{REDACTED}@h/x?token={REDACTED}&q=1"]],
        "pair": (f"http://u:{REDACTED}@h/", 3),
    }


def test_values_without_secrets_are_untouched() -> None:
    config = {
        "endpoint": "https://example.org/health?q=1&page=2",
        "message": "answered 500; expected one of [200]",
        "count": 3,
        "ratio": 0.5,
        "enabled": True,
        "nothing": None,
        "password": None,
        "when": "2026-12-01T10:00:00+01:00",
    }
    assert redact(config) == config


@pytest.mark.parametrize(
    "text",
    [
        "[[" * 100_000,
        "\n" * 200_000,
        "a." * 100_000,
        "token: 'a" * 20_000,
        "a: \"a: '" * 25_000,
        "a://" + "x" * 200_000,
        "a://" + "@" * 200_000,
        "http://" * 30_000,
        "Bearer " + " " * 200_000,
        "token:" * 30_000,
    ],
    ids=["brackets", "newlines", "dots", "quotes", "mixed-quotes", "userinfo", "ats", "schemes",
         "bearer", "headers"],
)  # fmt: skip
def test_scrubbing_a_hostile_value_takes_one_pass(text: str) -> None:
    # A stored argument is scrubbed on every GET: each of these took minutes when a
    # pattern could start inside a run it had already scanned (quadratic); now ~20 ms.
    # (It fails by taking minutes; what it asserts, that scrubbing twice changes nothing
    # more, holds either way.)
    once = redact_text(text)
    assert redact_text(once) == once


def test_clip_and_shown_bound_a_callers_value() -> None:
    huge = "x" * 1_000_000
    quoted = shown(huge)
    assert len(quoted) < 240
    assert quoted.startswith("'xxx")
    assert "(999800 more characters)" in quoted
    assert shown("short") == "'short'"
    assert clip("y" * 300, 10) == "yyyyyyyyyy…(290 more characters)"


# -- log lines -------------------------------------------------------------------------------


def test_every_record_is_scrubbed_as_it_is_created(
    scrubbed_logs: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("urllib3.connectionpool").debug(
            '%s://%s:%s "%s %s %s" %s', "http", "h", 80, "GET", "/x?token=abc&q=1", "HTTP/1.1", 200
        )
        logging.getLogger("botocore.endpoint").debug(
            "Sending http request: %s", {"headers": {"Authorization": "AWS4 Signature=zz9"}}
        )
    text = caplog.text
    assert "token=<redacted>&q=1" in text
    assert "abc" not in text
    assert "zz9" not in text


def test_the_formatter_scrubs_the_line_and_its_fields() -> None:
    record = logging.makeLogRecord(
        {
            "name": "attacks.x",
            "levelno": logging.INFO,
            "levelname": "INFO",
            "msg": "calling %s",
            "args": ("http://u:hunter2@h/x?sig=s1g",),
            "api_key": "k3y",
            "endpoint": "http://h/?password=pw0",
            "executor_id": "e-1",
        }
    )
    line = logfmt.FieldsFormatter().format(record)
    for secret in ("hunter2", "s1g", "k3y", "pw0"):
        assert secret not in line
    assert "executor_id=e-1" in line
    assert f"api_key={REDACTED}" in line


def test_configure_quiets_the_loggers_that_print_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", root.level)
    factory = logging.getLogRecordFactory()
    levels = {name: logging.getLogger(name).level for name in logfmt.QUIETED}
    try:
        logfmt.configure()
        for name in ("urllib3", "botocore", "requests", "paramiko"):
            assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
        (handler,) = root.handlers
        assert any(isinstance(f, logfmt.RedactingFilter) for f in handler.filters)
    finally:
        logging.setLogRecordFactory(factory)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_the_lambda_app_masks_secrets_in_every_log_record_from_import() -> None:
    """The deployed functions log through the runtime's handler, not ours."""
    import logging

    import app  # noqa: F401  (importing it is what a Lambda cold start does)

    factory = logging.getLogRecordFactory()
    assert getattr(factory, "scrubs_secrets", False)
    record = factory("x", logging.INFO, __file__, 1, "GET %s", ("https://u:hunter2@h/",), None)
    assert "hunter2" not in record.getMessage()
