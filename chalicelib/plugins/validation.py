"""JSON Schema validation whose messages name the offending field."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from chalicelib.domain.errors import MAX_SHOWN, InvalidPayload, clip, shown

# A field path is the caller's keys; a message a sentence and one value, shown.
MAX_PATH = 100
MAX_MESSAGE = MAX_SHOWN + 80


def validate(instance: Any, schema: dict[str, Any] | None, where: str) -> None:
    """Raise InvalidPayload naming ``where`` + the path of the first real problem."""
    if not schema:
        return
    validator_class = jsonschema.validators.validator_for(
        schema, default=jsonschema.Draft202012Validator
    )
    validator = validator_class(schema)
    error = best_match(validator.iter_errors(instance))
    if error is None:
        return
    path = ".".join([where, *(str(part) for part in error.absolute_path)])
    raise InvalidPayload(f"{clip(path, MAX_PATH)}: {_message_of(error)}")


def _message_of(error: ValidationError) -> str:
    """jsonschema's message with the offending value quoted at most MAX_SHOWN characters.

    Its messages quote the whole instance (``'xxxx...' is not of type 'integer'``): a
    megabyte string, or a secret sent in the wrong field, would be echoed back whole.
    """
    quoted = repr(error.instance)
    text = error.message
    if len(quoted) > MAX_SHOWN:
        text = text.replace(quoted, shown(error.instance))
    # Other messages quote parts of it (an additional property's name...): cut them.
    return clip(text, MAX_MESSAGE)


def planner_schema_target(schema: dict[str, Any] | None) -> str:
    """What a planner's schema describes: ``"planner"`` (the whole ``{"ref", "args"}``
    object) or ``"planner.args"``.

    The 2017 documentation's planner schemas describe the whole object (their
    ``properties`` are ``ref`` and ``args``); validated against ``args`` they would check
    nothing, since an ``args`` object has neither key. A schema whose ``properties`` name
    ``ref`` or ``args`` is therefore taken to be 2017-shaped; any other describes ``args``.
    """
    properties = (schema or {}).get("properties")
    if isinstance(properties, dict) and ("ref" in properties or "args" in properties):
        return "planner"
    return "planner.args"


def validate_planner(planner: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Validate a plan's ``planner`` object with its planner class's schema, applied to
    the whole object or to its ``args`` as :func:`planner_schema_target` decides."""
    if planner_schema_target(schema) == "planner":
        validate(planner, schema, "planner")
    else:
        validate(planner.get("args"), schema, "planner.args")


def check_schema(schema: Any) -> str | None:
    """Return why ``schema`` is not a usable JSON Schema, or None if it is."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        return "schema must be a JSON object"
    try:
        validator_class = jsonschema.validators.validator_for(
            schema, default=jsonschema.Draft202012Validator
        )
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as error:
        return f"invalid schema: {error.message}"
    return None
