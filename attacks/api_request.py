"""ApiRequest: call an HTTP endpoint and record its answer."""

from __future__ import annotations

from typing import Any

from chaosmonkey.attacks import Attack, AttackFailed


class ApiRequest(Attack):
    """Send ``method`` to ``endpoint`` with ``headers`` and ``payload`` as a JSON body.

    The status code and elapsed time are the executor's result; with
    ``expected_status`` the executor fails when the answer has another status. A host
    that resolves to a link-local or instance-metadata address is refused (the executor
    fails, nothing is sent) unless the engine allows such targets. It takes no secret
    references: its headers and payload are plain values, stored and shown as given.
    """

    ref = "api_request:ApiRequest"
    schema = {
        "type": "object",
        "properties": {
            "ref": {"type": "string"},
            "args": {
                "type": "object",
                "properties": {
                    "endpoint": {"type": "string", "pattern": "^https?://"},
                    "method": {
                        "type": "string",
                        "enum": [
                            "GET",
                            "POST",
                            "PUT",
                            "PATCH",
                            "DELETE",
                            "HEAD",
                            "OPTIONS",
                            "get",
                            "post",
                            "put",
                            "patch",
                            "delete",
                            "head",
                            "options",
                        ],
                    },
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "payload": {},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 300},
                    "expected_status": {
                        "type": "array",
                        "items": {"type": "integer", "minimum": 100, "maximum": 599},
                        "minItems": 1,
                    },
                },
                "required": ["endpoint", "method"],
                "additionalProperties": False,
            },
        },
        "required": ["ref", "args"],
    }
    example = {
        "ref": ref,
        "args": {
            "endpoint": "http://localhost:4500",
            "method": "GET",
            "payload": {"test": "1"},
            "headers": {"X-CUSTOM-HEADER": "test"},
            "timeout": 10,
            "expected_status": [200],
        },
    }

    @classmethod
    def warm_up(cls) -> None:
        import chalicelib.adapters.http  # noqa: F401

    @classmethod
    def max_duration(cls, args: dict[str, Any]) -> float | None:
        # requests applies the timeout to connecting and to each read: twice at most.
        return 2 * float(args.get("timeout", 10))

    def run(self) -> dict[str, Any]:
        from chalicelib.adapters.http import OutboundRefused, send_json

        args = self.attack_config
        try:
            answer = send_json(
                method=args["method"].upper(),
                url=args["endpoint"],
                headers=args.get("headers") or {},
                payload=args.get("payload"),
                timeout=float(args.get("timeout", 10)),
                policy=self.context.environment.outbound,
            )
        except OutboundRefused as refused:
            raise AttackFailed(str(refused)) from None
        result = {
            "endpoint": args["endpoint"],
            "method": args["method"].upper(),
            "status_code": answer.status_code,
            "elapsed_ms": answer.elapsed_ms,
        }
        expected = args.get("expected_status")
        if expected and answer.status_code not in expected:
            raise AttackFailed(
                f"{args['endpoint']} answered {answer.status_code}; expected one of {expected}",
                result=result,
            )
        return result
