"""Secret references are confined to what the operator allowed, at plan time and again at
resolve time, and every value a run resolved is scrubbed from what the runner stores."""

from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest

from chalicelib.adapters.secrets import SecretError, resolve_secret
from chalicelib.bootstrap import Engine, build_engine
from chalicelib.plugins.contract import AttackContext, AttackEnvironment
from chalicelib.plugins.secret_policy import (
    REDACTED,
    ArgumentPolicy,
    SecretPolicy,
    SecretVault,
    find_references,
)
from chalicelib.settings import Settings
from tests.conftest import FixedClock, RecordingScheduler
from tests.security.conftest import Api

POLICY = SecretPolicy()


@pytest.mark.parametrize(
    "reference",
    [
        {"env": "CME_SECRET_SSH_KEY"},
        {"ssm": "/chaos-monkey-engine/ssh-key"},
        {"ssm": "arn:aws:ssm:eu-west-1:123456789012:parameter/chaos-monkey-engine/k"},
        {"secretsmanager": "chaos-monkey-engine/gce", "key": "private_key"},
        {"secretsmanager": "arn:aws:secretsmanager:eu-west-1:1:secret:chaos-monkey-engine/x"},
    ],
)
def test_references_under_the_allowed_prefixes_pass(reference: dict[str, Any]) -> None:
    assert POLICY.refusal(reference) is None


@pytest.mark.parametrize(
    ("reference", "why"),
    [
        ({"env": "HOME"}, "environment variable HOME is not under the allowed prefix CME_SECRET_"),
        ({"env": "AWS_SECRET_ACCESS_KEY"}, "AWS_SECRET_ACCESS_KEY is not under"),
        ({"env": "cme_secret_lower"}, "cme_secret_lower is not under"),
        ({"ssm": "/prod/db-password"}, "SSM parameter /prod/db-password is not under"),
        ({"ssm": "/chaos-monkey-engine/../prod/db"}, "is not under the allowed paths"),
        ({"ssm": "chaos-monkey-engine/no-leading-slash"}, "is not under"),
        ({"ssm": "arn:aws:ssm:eu-west-1:1:parameter/prod/x"}, "is not under"),
        ({"secretsmanager": "prod/db", "key": "password"}, "Secrets Manager secret prod/db"),
        ({"secretsmanager": "arn:aws:secretsmanager:eu-west-1:1:secret:prod/x"}, "is not under"),
    ],
)
def test_references_elsewhere_are_refused_naming_what_and_why(
    reference: dict[str, Any], why: str
) -> None:
    refusal = POLICY.refusal(reference)

    assert refusal is not None
    assert why in refusal


def test_references_are_found_wherever_they_are_in_the_arguments() -> None:
    args = {
        "ssh": {"key": {"ssm": "/a"}, "user": "root"},
        "driver_args": {"token": {"env": "X"}},
        "list": [{"nested": [{"secretsmanager": "s", "key": "k"}]}],
        "not_a_reference": {"env": "X", "other": 1},
    }

    found = dict(find_references(args, "attack.args"))

    assert found == {
        "attack.args.ssh.key": {"ssm": "/a"},
        "attack.args.driver_args.token": {"env": "X"},
        "attack.args.list.0.nested.0": {"secretsmanager": "s", "key": "k"},
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {
                "hosts": ["127.0.0.1"],
                "script": "true",
                "ssh": {"user": "root", "key": {"env": "HOME"}},
            },
            "invalid payload attack.args.ssh.key: environment variable HOME is not under the "
            "allowed prefix CME_SECRET_ (CME_SECRET_ENV_PREFIX)",
        ),
        (
            {
                "hosts": ["127.0.0.1"],
                "script": "true",
                "ssh": {
                    "user": "root",
                    "key": {"env": "CME_SECRET_KEY"},
                    "passphrase": {"ssm": "/prod/passphrase"},
                },
            },
            "invalid payload attack.args.ssh.passphrase: SSM parameter /prod/passphrase is not "
            "under the allowed paths /chaos-monkey-engine/ (CME_SECRET_SSM_PATHS)",
        ),
    ],
)
def test_a_plan_referencing_a_secret_outside_the_policy_is_refused_with_a_400(
    api: Api, args: dict[str, Any], message: str
) -> None:
    answer = api.plan({"ref": "run_script:RunScript", "args": args})

    assert (answer.status, answer.body) == (400, {"msg": message})
    assert api.call("get", "/api/1/plans/?all=true").body["plans"] == []


def test_node_attack_driver_arguments_are_checked_too(api: Api) -> None:
    args = {
        "provider": "dummy",
        "name_pattern": "*",
        "key": {"env": "CME_SECRET_KEY"},
        "driver_args": {"api_token": {"secretsmanager": "prod/api", "key": "token"}},
    }

    answer = api.plan({"ref": "terminate_node:TerminateNode", "args": args})

    assert answer.status == 400
    assert answer.body["msg"].startswith(
        "invalid payload attack.args.driver_args.api_token: Secrets Manager secret prod/api"
    )


def test_the_operator_chooses_the_prefixes(
    sqlite_store: Any, clock: FixedClock, scheduler: RecordingScheduler, aws: None
) -> None:
    settings = Settings.from_env(
        {
            "CME_SECRET_ENV_PREFIX": "CHAOS_",
            "CME_SECRET_SSM_PATHS": "/team-a/, /team-b/",
            "CME_SECRET_SECRETSMANAGER_PATHS": "",
        }
    )
    engine = build_engine(settings, sqlite_store, lambda runner: scheduler, clock)
    policy = engine.plans.argument_policy.secrets

    assert policy.refusal({"env": "CHAOS_KEY"}) is None
    assert policy.refusal({"env": "CME_SECRET_KEY"}) is not None
    assert policy.refusal({"ssm": "/team-b/key"}) is None
    assert "(none)" in str(policy.refusal({"secretsmanager": "chaos-monkey-engine/x"}))
    # The attack function applies the same policy (its context's environment).
    assert engine.runner.environment.secret_policy == policy


def test_resolve_time_refuses_what_the_policy_refuses_even_if_it_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOT_A_SECRET_FOR_PLANS", "value")
    monkeypatch.setenv("CME_SECRET_ALLOWED", "value")

    with pytest.raises(SecretError, match="not resolved: environment variable NOT_A_SECRET"):
        resolve_secret({"env": "NOT_A_SECRET_FOR_PLANS"})
    # The policy reaches the attack as a value on its context, not through os.environ.
    narrow = AttackEnvironment(secret_policy=SecretPolicy(env_prefix="OTHER_"))
    context = AttackContext(environment=narrow)
    from chalicelib.adapters.secrets import resolver

    with pytest.raises(SecretError, match="not under the allowed prefix OTHER_"):
        resolver(context, None)({"env": "CME_SECRET_ALLOWED"})
    assert not context.secrets
    assert resolver(AttackContext(), None)({"env": "CME_SECRET_ALLOWED"}) == "value"


def test_a_stored_plan_outside_a_narrower_policy_is_refused_at_run_time(
    engine: Engine, api: Api, monkeypatch: pytest.MonkeyPatch, clock: FixedClock
) -> None:
    monkeypatch.setenv("CME_SECRET_NODES", "2")
    args = {"provider": "dummy", "name_pattern": "*", "key": {"env": "CME_SECRET_NODES"}}
    plan = api.plan({"ref": "terminate_node:TerminateNode", "args": args})
    assert plan.status == 200
    # The operator narrowed the policy after the plan was made.
    engine.runner.environment = AttackEnvironment(secret_policy=SecretPolicy(env_prefix="X_"))
    executor = api.call("get", f"/api/1/plans/{plan.body['id']}").body["_embedded"]["executors"][0]
    clock.current = clock.current.replace(hour=10)

    engine.runner.run(executor["id"])

    stored = api.call("get", f"/api/1/executors/{executor['id']}").body
    assert stored["status"] == "failed"
    assert "not resolved: environment variable CME_SECRET_NODES" in stored["error"]


def test_argument_policy_names_the_first_refused_field() -> None:
    from chalicelib.domain.errors import InvalidPayload

    with pytest.raises(InvalidPayload, match=r"^invalid payload attack.args.a.1: environment"):
        ArgumentPolicy().check({"args": {"a": [{"env": "CME_SECRET_OK"}, {"env": "PATH"}]}})


def test_the_vault_scrubs_every_value_it_recorded_everywhere() -> None:
    vault = SecretVault()
    pem = "-----BEGIN KEY-----\nQUJDREVGR0hJSktMTU5PUA==\n-----END KEY-----\n"
    vault.record("hunter2-secret")
    vault.record(pem)

    scrubbed = vault.scrub(
        {
            "error": "auth failed with hunter2-secret",
            "result": {"hunter2-secret": ["x hunter2-secret y", 3, None]},
            "reason": "parser choked on line QUJDREVGR0hJSktMTU5PUA==",
        }
    )

    assert scrubbed == {
        "error": f"auth failed with {REDACTED}",
        "result": {REDACTED: [f"x {REDACTED} y", 3, None]},
        "reason": f"parser choked on line {REDACTED}",
    }
    assert SecretVault().scrub({"a": "hunter2-secret"}) == {"a": "hunter2-secret"}


LEAKY_ATTACKS = textwrap.dedent(
    '''
    """Attacks that put the secret they resolved in everything they report."""

    from chalicelib.adapters.secrets import resolver
    from chaosmonkey.attacks import Attack, AttackFailed, AttackSkipped


    class Leaky(Attack):
        ref = "leaky:Leaky"
        schema = None
        example = None

        def run(self):
            value = resolver(self.context, None)({"env": "CME_SECRET_LEAKY"})
            how = self.attack_config["how"]
            if how == "failed":
                raise AttackFailed(f"denied {value}", result={"sent": value, value: [value]})
            if how == "skipped":
                raise AttackSkipped(f"not now {value}", result={"sent": value})
            if how == "raised":
                raise RuntimeError(f"crashed holding {value}")
            return {"answer": value}
    '''
)


SECRET = "leaky-value-7f3c"


@pytest.fixture
def leaky_engine(
    tmp_path: Path,
    sqlite_store: Any,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    monkeypatch: pytest.MonkeyPatch,
) -> Engine:
    monkeypatch.setenv("CME_SECRET_LEAKY", SECRET)
    (tmp_path / "leaky.py").write_text(LEAKY_ATTACKS)
    settings = Settings(attack_folders=(tmp_path,))
    return build_engine(settings, sqlite_store, lambda runner: scheduler, clock)


@pytest.mark.parametrize("how", ["failed", "skipped", "raised", "succeeded"])
def test_the_runner_scrubs_resolved_values_from_error_reason_result_and_log(
    leaky_engine: Engine,
    clock: FixedClock,
    scheduler: RecordingScheduler,
    caplog: pytest.LogCaptureFixture,
    how: str,
) -> None:
    engine, secret = leaky_engine, SECRET
    plan = engine.plans.create(
        {
            "name": "leak",
            "attack": {"ref": "leaky:Leaky", "args": {"how": how}},
            "planner": {"ref": "exact_planner:ExactPlanner", "args": {"date": "2026-12-01T10:00Z"}},
        }
    )
    (executor_id,) = scheduler.scheduled
    clock.current = scheduler.scheduled[executor_id]
    caplog.set_level(logging.DEBUG)

    engine.runner.run(executor_id)

    stored = engine.store.get_executor(executor_id)
    assert stored is not None and stored.plan_id == plan.id
    assert stored.status.value == {"raised": "failed"}.get(how, how)
    shown = json.dumps([stored.error, stored.reason, stored.result])
    assert REDACTED in shown
    assert secret not in shown
    assert secret not in caplog.text
