"""JSON Schema validation whose messages name the offending field."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from chalicelib.domain.errors import InvalidPayload


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
    raise InvalidPayload(f"{path}: {error.message}")


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
