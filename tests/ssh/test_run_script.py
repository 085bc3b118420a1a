"""RunScript on real sshd hosts: upload, run, exit code, output tail, keys, host keys."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from chalicelib.adapters.ssh import KnownHosts, SshKeyError, load_private_key, remote_command
from chalicelib.domain.model import ExecutorStatus
from chaosmonkey.attacks import AttackFailed, AttackSkipped
from tests.conftest import FixedClock
from tests.ssh.conftest import Lab, wait_until

RUN_SCRIPT = "run_script:RunScript"


def test_inline_script_runs_on_every_static_host(lab: Lab, ssh_key_env: None, attack: Any):
    marker = lab.hosts[0].directory.parent / "ran"
    script = (
        f'#!/bin/sh\nme=$(hostname -I | tr -d " ")\necho "hello from $me"\ntouch "{marker}-$me"\n'
    )
    hosts = [host.address for host in lab.hosts]
    result = attack(RUN_SCRIPT, {"hosts": hosts, "script": script, "ssh": lab.ssh()})
    assert [target["exit_code"] for target in result["targets"]] == [0, 0, 0]
    for host, outcome in zip(lab.hosts, result["targets"], strict=True):
        assert outcome["host"] == host.address
        assert f"hello from {host.address}" in outcome["stdout_tail"]
        assert outcome["host_key_fingerprint"].startswith("SHA256:")
        assert outcome["host_key_checked"] is False
        assert (marker.parent / f"ran-{host.address}").exists()


def test_the_2017_form_runs_a_bundled_script_on_an_ec2_instance_chosen_by_tag(
    lab: Lab, attack: Any, aws: None
):
    """Filters, a base64 ``pem`` and ``script_attacks/s_burncpu.sh``, as the 2017 docs show.

    The moto instances carry the lab hosts' addresses, so the SSH half is real.
    """
    ec2 = boto3.client("ec2")
    vpc = ec2.create_vpc(CidrBlock=str(lab.network.supernet(new_prefix=16)))["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=str(lab.network))["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ids = {}
    for host, chaos in ((lab.hosts[0], "true"), (lab.hosts[1], "false")):
        instance = ec2.run_instances(
            ImageId=image,
            MinCount=1,
            MaxCount=1,
            SubnetId=subnet,
            PrivateIpAddress=host.address,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Chaos", "Value": chaos},
                        {"Key": "chaos-monkey-engine", "Value": "target"},  # the opt-in tag
                    ],
                }
            ],
        )["Instances"][0]
        ids[host.name] = instance["InstanceId"]
    target = lab.hosts[0]
    args = {
        "filters": {"tag:Chaos": "true"},
        "local_script": "script_attacks/s_burncpu.sh",
        "remote_script": str(target.directory / "burn_cpu"),
        "env": {"CME_DURATION": "2", "CME_CPUS": "1"},
        "ssh": {"user": "root", "pem": lab.pem_base64},
        "region": "eu-west-1",
    }
    result = attack(RUN_SCRIPT, args)
    (outcome,) = result["targets"]
    assert outcome["name"] == ids["host0"]
    assert outcome["host"] == target.address
    assert result["script"] == "burn_cpu.sh"
    marker = f"cme-burncpu-{result['run_id']}"
    wait_until(lambda: target.processes_matching(marker), 5, "the burner runs on the tagged host")
    assert not lab.hosts[1].processes_matching(marker)
    assert not (target.directory / "burn_cpu").exists(), "the uploaded script is removed"
    wait_until(lambda: not target.processes_matching(marker), 10, "the burner stopped")
    assert "pem" in args["ssh"], "the plan's config is left as it was"


def test_no_matching_instance_skips(lab: Lab, attack: Any, aws: None):
    with pytest.raises(AttackSkipped, match="no instance matched"):
        attack(
            RUN_SCRIPT,
            {
                "filters": {"tag:Chaos": "nobody"},
                "script": "#!/bin/sh\ntrue\n",
                "ssh": {"user": "root", "pem": lab.pem_base64},
            },
        )


def test_non_zero_exit_fails_with_the_output_tail(lab: Lab, ssh_key_env: None, attack: Any):
    script = "#!/bin/sh\nseq 1 5000\necho 'disk on fire' >&2\nexit 3\n"
    with pytest.raises(AttackFailed, match="exit code 3: disk on fire") as raised:
        attack(RUN_SCRIPT, {"hosts": [lab.hosts[1].address], "script": script, "ssh": lab.ssh()})
    (outcome,) = raised.value.result["targets"]
    assert outcome["exit_code"] == 3
    assert outcome["stdout_tail"].endswith("4999\n5000\n")
    assert not outcome["stdout_tail"].startswith("1\n"), "only the tail is kept"
    assert outcome["stderr_tail"] == "disk on fire\n"


def test_a_failing_script_marks_the_executor_failed_through_the_engine(
    lab: Lab, engine: Any, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CME_SECRET_TEST_SSH_KEY", lab.key_pem)
    plan = engine.plans.create(
        {
            "name": "failing script",
            "planner": {
                "ref": "exact_planner:ExactPlanner",
                "args": {"date": (clock.now() + timedelta(hours=1)).isoformat()},
            },
            "attack": {
                "ref": RUN_SCRIPT,
                "args": {
                    "hosts": [lab.hosts[2].address],
                    "script": (
                        "#!/bin/sh\necho 'checking the service'\necho 'it broke' >&2\nexit 7\n"
                    ),
                    "ssh": lab.ssh(),
                },
            },
        }
    )
    executor = engine.plans.get(plan.id).executors.items[0]
    clock.current = executor.next_run_time
    engine.runner.run(executor.id)
    stored = engine.store.get_executor(executor.id)
    assert stored.status is ExecutorStatus.FAILED
    assert "exit code 7: it broke" in stored.error
    (outcome,) = stored.result["targets"]
    assert outcome["exit_code"] == 7
    assert outcome["stdout_tail"] == "checking the service\n"
    assert outcome["stderr_tail"] == "it broke\n"


def test_known_host_keys_are_checked_strictly(lab: Lab, ssh_key_env: None, attack: Any):
    good, other = lab.hosts[0], lab.hosts[1]
    marker = good.directory / "strict-ran"
    script = f"#!/bin/sh\ntouch {marker}\n"
    result = attack(
        RUN_SCRIPT,
        {
            "hosts": [good.address],
            "script": script,
            "ssh": lab.ssh(known_hosts=[good.known_hosts_line]),
        },
    )
    assert result["targets"][0]["host_key_checked"] is True
    assert marker.exists()
    marker.unlink()

    # The right address with another host's key: refused before anything runs.
    forged = f"{good.address} {other.host_key_line}"
    with pytest.raises(AttackFailed, match="not among the known host keys") as raised:
        attack(
            RUN_SCRIPT,
            {"hosts": [good.address], "script": script, "ssh": lab.ssh(known_hosts=[forged])},
        )
    assert raised.value.result["targets"][0]["exit_code"] is None
    assert not marker.exists()


def test_key_from_a_secrets_manager_reference_and_never_in_the_result(
    lab: Lab, attack: Any, aws: None, caplog: pytest.LogCaptureFixture
):
    boto3.client("secretsmanager").create_secret(
        Name="chaos-monkey-engine/ssh", SecretString=json.dumps({"private_key": lab.key_pem})
    )
    caplog.set_level(logging.DEBUG)
    ssh = {
        "user": "root",
        "key": {"secretsmanager": "chaos-monkey-engine/ssh", "key": "private_key"},
    }
    with pytest.raises(AttackFailed) as raised:
        attack(
            RUN_SCRIPT,
            {"hosts": [lab.hosts[0].address], "script": "#!/bin/sh\nexit 1\n", "ssh": ssh},
        )
    stored = json.dumps(raised.value.result) + str(raised.value)
    key_body = lab.key_pem.splitlines()[1]
    assert key_body not in stored
    # botocore's own DEBUG log prints API responses (the secret among them); ours never do.
    ours = [r for r in caplog.records if not r.name.startswith(("botocore", "boto3", "urllib3"))]
    assert ours, "the run logs something"
    assert all(key_body not in r.getMessage() + str(r.__dict__) for r in ours)
    assert raised.value.result["targets"][0]["exit_code"] == 1


def test_an_unreadable_key_fails_without_showing_it(lab: Lab, attack: Any):
    # Built in pieces so that no committed line looks like a real private key.
    armour = "OPENSSH " + "PRIVATE KEY"
    garbage = f"-----BEGIN {armour}-----\nc2VjcmV0LXN0dWZm\n-----END {armour}-----\n"
    with pytest.raises(AttackFailed, match="not a supported private key") as raised:
        attack(
            RUN_SCRIPT,
            {
                "hosts": [lab.hosts[0].address],
                "script": "#!/bin/sh\ntrue\n",
                "ssh": {
                    "user": "root",
                    "pem": __import__("base64").b64encode(garbage.encode()).decode(),
                },
            },
        )
    assert "c2VjcmV0LXN0dWZm" not in str(raised.value)


@pytest.mark.parametrize(
    "name", ["../run_script.py", "/etc/passwd", "scripts/../../x.sh", "nope.sh"]
)
def test_local_script_outside_the_library_is_refused(
    lab: Lab, ssh_key_env: None, attack: Any, name: str
):
    with pytest.raises(AttackFailed, match=r"local_script|no bundled script"):
        attack(
            RUN_SCRIPT, {"hosts": [lab.hosts[0].address], "local_script": name, "ssh": lab.ssh()}
        )


def test_remote_script_path_is_quoted_not_interpreted(lab: Lab, ssh_key_env: None, attack: Any):
    host = lab.hosts[0]
    token = f"pwned-{uuid.uuid4().hex[:8]}"
    # The session starts in root's home: an injected relative `touch` would land there.
    places = [host.directory / token, Path("/root") / token, Path("/") / token]
    path = f"{host.directory}/odd name; touch {token} $(touch {token}) `touch {token}`'\""
    result = attack(
        RUN_SCRIPT,
        {
            "hosts": [host.address],
            "script": '#!/bin/sh\necho "I am $0 with $GREETING"\n',
            "remote_script": path,
            "env": {"GREETING": f"$(touch {token}); `touch {token}`"},
            "ssh": lab.ssh(),
        },
    )
    assert f"I am {path} with $(touch {token})" in result["targets"][0]["stdout_tail"]
    assert not any(place.exists() for place in places)


def test_a_script_that_runs_too_long_is_abandoned(lab: Lab, ssh_key_env: None, attack: Any):
    with pytest.raises(AttackFailed, match="no exit within the timeout") as raised:
        attack(
            RUN_SCRIPT,
            {
                "hosts": [lab.hosts[2].address],
                "script": "#!/bin/sh\necho started\nsleep 60\n",
                "timeout": 1,
                "ssh": lab.ssh(),
            },
        )
    (outcome,) = raised.value.result["targets"]
    assert outcome["timed_out"] is True
    assert outcome["stdout_tail"] == "started\n"


def test_a_child_left_holding_the_output_does_not_hold_the_run(
    lab: Lab, ssh_key_env: None, attack: Any
):
    # The child keeps stdout open, so no EOF comes; the script itself has exited with 0.
    script = "#!/bin/sh\nsleep 60 &\necho started\nexit 0\n"
    result = attack(
        RUN_SCRIPT,
        {"hosts": [lab.hosts[2].address], "script": script, "timeout": 8, "ssh": lab.ssh()},
    )
    (outcome,) = result["targets"]
    assert not outcome.get("timed_out")
    assert outcome["exit_code"] == 0
    assert outcome["stdout_tail"] == "started\n"


def test_unreachable_host_is_reported(lab: Lab, ssh_key_env: None, attack: Any):
    nobody = str(lab.network[200])
    with pytest.raises(AttackFailed, match=nobody):
        attack(
            RUN_SCRIPT,
            {
                "hosts": [f"{nobody}:22"],
                "script": "#!/bin/sh\ntrue\n",
                "ssh": lab.ssh(connect_timeout=1),
            },
        )


def test_dry_run_touches_nothing(lab: Lab, ssh_key_env: None, attack: Any):
    marker = lab.hosts[0].directory / "dry"
    with pytest.raises(AttackSkipped, match="dry run") as skipped:
        attack(
            RUN_SCRIPT,
            {
                "hosts": [lab.hosts[0].address],
                "script": f"#!/bin/sh\ntouch {marker}\n",
                "ssh": lab.ssh(),
            },
            dry_run=True,
        )
    assert not marker.exists()
    assert skipped.value.result["script"] == "inline-script"
    assert len(skipped.value.result["targets"]) == 1


def test_count_picks_that_many_static_hosts(lab: Lab, ssh_key_env: None, attack: Any):
    result = attack(
        RUN_SCRIPT,
        {
            "hosts": [h.address for h in lab.hosts],
            "count": 2,
            "script": "#!/bin/sh\ntrue\n",
            "ssh": lab.ssh(),
        },
    )
    assert len(result["targets"]) == 2


def test_known_hosts_lines_and_command_quoting() -> None:
    known = KnownHosts.parse(
        ["# comment", "", "[10.0.0.1]:2222,host ssh-ed25519 AAAA", "ssh-rsa AAAB"]
    )
    assert known.by_host["[10.0.0.1]:2222"] == {"ssh-ed25519 AAAA"}
    assert known.anywhere == {"ssh-rsa AAAB"}
    with pytest.raises(ValueError, match="line 1"):
        KnownHosts.parse(["not a key line"])
    assert remote_command("/tmp/a b", {"X": "$(y)"}, sudo=True, interpreter="/bin/sh") == (
        "sudo -n env 'X=$(y)' /bin/sh '/tmp/a b'"
    )
    with pytest.raises(ValueError, match="variable name"):
        remote_command("/x", {"A;B": "1"})
    with pytest.raises(SshKeyError, match="neither PEM"):
        load_private_key("%%%", "a test reference")


def test_output_sent_after_the_exit_status_is_still_collected(
    lab: Lab, ssh_key_env: None, attack: Any
):
    # sshd reports the exit status as soon as the process is reaped; megabytes of output
    # can still be on their way. The last lines of both streams must be in the result.
    script = (
        "#!/bin/sh\nhead -c 6000000 /dev/zero | tr '\\0' 'x'\necho\necho 'last of stdout'\n"
        "head -c 3000000 /dev/zero | tr '\\0' 'y' >&2\necho >&2\necho 'last of stderr' >&2\n"
        "exit 4\n"
    )
    for _ in range(3):
        with pytest.raises(AttackFailed, match="exit code 4: last of stderr") as raised:
            attack(
                RUN_SCRIPT, {"hosts": [lab.hosts[2].address], "script": script, "ssh": lab.ssh()}
            )
        (outcome,) = raised.value.result["targets"]
        assert outcome["stdout_tail"].endswith("\nlast of stdout\n")
        assert outcome["stderr_tail"].endswith("\nlast of stderr\n")
