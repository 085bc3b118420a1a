"""What counts as secret, and how secrets are masked: by name and by value, in one place.

Every place that shows, stores or logs a caller's value masks it here (HAL documents,
executor outcomes, log lines) and the one list of sensitive names below is also what
the node attacks use to insist on secret references. Names match case-insensitively and
with ``-`` or ``_`` alike; short names (``pass``, ``auth``, ``pem``...) only as a whole
name or a ``_``/``-``-separated word, so ``author`` or ``compass`` stay shown.

By value, inside any string: the password of a URL's userinfo (``https://u:p@h/`` →
``https://u:<redacted>@h/``; a user-only userinfo, often a token, is masked whole), the
value of a sensitive ``name=value`` pair (query strings, form bodies, logfmt fields),
of a quoted ``'name': 'value'`` pair (a dict's repr in an error message), of a
``Name: value`` header line, and the credential after ``Bearer``/``Basic``.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"

# Matched anywhere in a name (case and -/_ ignored).
SENSITIVE_WORDS: tuple[str, ...] = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "session",
    "signature",
    "access_key",
    "accesskey",
    "secret_key",
    "client_secret",
    "x_amz_security_token",
)
# Matched only as a whole name or one -/_-separated word of it.
SENSITIVE_SHORT_NAMES: tuple[str, ...] = ("pass", "pwd", "auth", "pem", "sig", "jwt")


def _alternatives(names: tuple[str, ...]) -> str:
    return "|".join(re.escape(name).replace("_", "[-_]?") for name in names)


# A Python regular expression (also usable as a JSON Schema ``patternProperties`` key,
# which jsonschema searches with ``re``) that finds a sensitive name.
SENSITIVE_NAME_PATTERN = (
    f"(?i)(?:{_alternatives(SENSITIVE_WORDS)})"
    f"|(?:^|[-_])(?:{_alternatives(SENSITIVE_SHORT_NAMES)})(?:[-_]|$)"
)
_SENSITIVE_NAME = re.compile(SENSITIVE_NAME_PATTERN)

# Every pattern below runs in time linear in the text (a caller's value can be 100 KB and
# is scrubbed on every GET): a match can start only where a run of its characters
# starts (the lookbehinds), and no two repetitions can match the same character.
_NAME_CHARS = r"A-Za-z0-9_.\-\[\]"
_NAME = rf"(?<![{_NAME_CHARS}])[{_NAME_CHARS}]+"
# scheme://userinfo@ : the userinfo runs to the last @ before the path.
_USERINFO = re.compile(
    r"(?<![A-Za-z0-9+.\-])(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
    r"(?P<userinfo>[^\s/?#@]*(?:@[^\s/?#@]*)*)@"
)
# name=value in a query string, a form body or a log line.
_PAIR = re.compile(rf"(?P<name>{_NAME})=(?P<value>[^&\s#;,'\"]*)")
# 'name': 'value' / "name": "value" / name: 'value' (a dict's repr, JSON).
_QUOTED = re.compile(
    rf"(?P<name>(?<!['\"])['\"]?{_NAME}['\"]?[ \t]*:[ \t]*)"
    r"(?:'(?P<single>[^'\r\n\\]*(?:\\.[^'\r\n\\]*)*)'"
    r"|\"(?P<double>[^\"\r\n\\]*(?:\\.[^\"\r\n\\]*)*)\")"
)
# Name: value, a header line (to the end of the line).
_HEADER = re.compile(rf"(?m)^(?P<name>[ \t]*[{_NAME_CHARS}]+:[ \t]*)(?P<value>[^\r\n]+)")
_SCHEME_CREDENTIAL = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<scheme>bearer|basic|digest)(?P<gap>[ \t]+)[A-Za-z0-9._~+/=\-]{4,}"
)


def is_sensitive(name: object) -> bool:
    """True when a value called ``name`` (a key, header, parameter) must not be shown."""
    return bool(_SENSITIVE_NAME.search(str(name)))


def redact_text(text: str) -> str:
    """``text`` with every secret found by value masked (see the module docstring)."""
    if not text:
        return text
    text = _USERINFO.sub(_mask_userinfo, text)
    text = _SCHEME_CREDENTIAL.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)
    text = _QUOTED.sub(_mask_quoted, text)
    text = _HEADER.sub(_mask_named, text)
    return _PAIR.sub(_mask_pair, text)


def redact(value: Any) -> Any:
    """A copy of ``value`` with secrets masked: values under sensitive names replaced
    whole, at any depth of dicts, lists and tuples, and every string scrubbed by value.

    Configs are stored as given (the attack needs them) but are never shown whole.
    """
    if isinstance(value, dict):
        return {
            key: REDACTED if is_sensitive(key) and value_is_set(item) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, tuple):  # a named tuple too: a plain tuple of its items
        return tuple(redact(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def value_is_set(value: Any) -> bool:
    """False for the values that hide nothing (None, "" and empty containers)."""
    return value is not None and value not in ("", {}, [])


def _mask_userinfo(match: re.Match[str]) -> str:
    user, colon, _password = match["userinfo"].partition(":")
    if colon and user:
        return f"{match['scheme']}{user}:{REDACTED}@"
    return f"{match['scheme']}{REDACTED}@"


def _mask_pair(match: re.Match[str]) -> str:
    if not match["value"] or not is_sensitive(match["name"]):
        return match[0]
    return f"{match['name']}={REDACTED}"


def _mask_quoted(match: re.Match[str]) -> str:
    quote = "'" if match["single"] is not None else '"'
    value = match["single"] if match["single"] is not None else match["double"]
    if not value or not is_sensitive(match["name"].strip("'\": \t")):
        return match[0]
    return f"{match['name']}{quote}{REDACTED}{quote}"


def _mask_named(match: re.Match[str]) -> str:
    if not is_sensitive(match["name"].strip(" \t:")) or REDACTED in match["value"]:
        return match[0]
    return f"{match['name']}{REDACTED}"
