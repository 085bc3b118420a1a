"""Plugin folders: loading, ref resolution, isolation of broken plugins."""

from __future__ import annotations

import json
import sys

import pytest

from chalicelib.domain.errors import UnknownPlugin
from chalicelib.plugins.contract import Attack, Planner
from chalicelib.plugins.registry import load_plugins
from chalicelib.plugins.validation import planner_schema_target
from chalicelib.settings import builtin_folder
from tests.conftest import FIXTURES

BROKEN = FIXTURES / "broken_plugins"


def test_builtin_plugins_load_without_errors() -> None:
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    planners = load_plugins("planners", Planner, [builtin_folder("planners")])
    assert attacks.errors == []
    assert planners.errors == []
    assert "api_request:ApiRequest" in attacks.refs
    assert planners.refs == [
        "exact_planner:ExactPlanner",
        "frequency_planner:FrequencyPlanner",
        "recurring_planner:RecurringPlanner",
        "simple_planner:SimplePlanner",
    ]


def test_colon_and_dotted_refs_name_the_same_class() -> None:
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    assert attacks.resolve("api_request.ApiRequest") is attacks.resolve("api_request:ApiRequest")


def test_a_broken_file_is_reported_and_the_rest_still_load() -> None:
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks"), BROKEN])
    reasons = {error.path.rsplit("/", 1)[-1]: error.reason for error in attacks.errors}
    assert "broken on purpose" in reasons["broken.py"]
    assert "BadSchema" in reasons["working.py"]
    assert "working:Working" in attacks.refs
    assert "api_request:ApiRequest" in attacks.refs


@pytest.mark.parametrize(
    "ref",
    [
        "working:Helper",  # a class, but not an Attack
        "working:Popen",  # imported into a plugin module, not a plugin
        "working:os",
        "working:Attack",  # the contract itself
        "working:BadSchema",  # refused at load time
        "broken:NeverLoaded",
        "os:system",
        "subprocess.Popen",
        "chalicelib.settings:Settings",
        "../working:Working",
        "",
        None,
        42,
    ],
)
def test_only_real_plugin_classes_resolve(ref: object) -> None:
    attacks = load_plugins("attacks", Attack, [BROKEN])
    with pytest.raises(UnknownPlugin):
        attacks.resolve(ref)


def test_planner_classes_are_not_attacks() -> None:
    attacks = load_plugins("attacks", Attack, [builtin_folder("planners")])
    assert attacks.refs == []


def test_plugins_do_not_shadow_standard_modules() -> None:
    attacks = load_plugins("attacks", Attack, [BROKEN])
    assert "json:Shadow" in attacks.refs
    assert sys.modules["json"] is json
    assert json.dumps({"a": 1}) == '{"a": 1}'


def test_a_folder_listed_twice_loads_once() -> None:
    folder = builtin_folder("attacks")
    attacks = load_plugins("attacks", Attack, [folder, folder])
    assert attacks.errors == []
    assert attacks.refs.count("api_request:ApiRequest") == 1


def test_unknown_ref_message_quotes_it_and_lists_known() -> None:
    attacks = load_plugins("attacks", Attack, [builtin_folder("attacks")])
    with pytest.raises(UnknownPlugin) as raised:
        attacks.resolve("terminate:Nope")
    assert "'terminate:Nope'" in raised.value.message
    assert "api_request:ApiRequest" in raised.value.message


def test_2017_planners_load_including_one_that_imports_pytz() -> None:
    planners = load_plugins("planners", Planner, [FIXTURES / "plugins_2017" / "planners"])
    assert planners.errors == []
    assert "pytz_planner:NewYorkPlanner" in planners.refs


@pytest.mark.parametrize(
    ("ref", "target"),
    [
        ("my_planner:MyPlanner", "planner"),  # the 2017 documentation's example
        ("times_planner:HourlyPlanner", "planner"),
        ("code_form_planner:TwiceDailyPlanner", "planner.args"),
        ("simple_planner:SimplePlanner", "planner.args"),
        ("exact_planner:ExactPlanner", "planner.args"),
    ],
)
def test_a_planner_schema_applies_to_what_it_describes(ref: str, target: str) -> None:
    folders = [builtin_folder("planners"), FIXTURES / "plugins_2017" / "planners"]
    planners = load_plugins("planners", Planner, folders)
    assert planner_schema_target(planners.resolve(ref).schema) == target


def test_warming_up_imports_each_attacks_drivers_and_survives_a_failure() -> None:
    """Local mode warms the attacks at start so the first run does not pay for its
    driver's import (about 35 ms for ApiRequest's, measured)."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from chalicelib.plugins.contract import Attack\n"
        "from chalicelib.plugins.registry import load_plugins\n"
        "from chalicelib.settings import builtin_folder\n"
        "attacks = load_plugins('attacks', Attack, (builtin_folder('attacks'),))\n"
        "drivers = ['chalicelib.adapters.http', 'chalicelib.adapters.ssh',\n"
        "           'chalicelib.adapters.cloud_nodes', 'chalicelib.adapters.ec2']\n"
        "assert not any(name in sys.modules for name in drivers), 'loaded before warm-up'\n"
        "broken = attacks.classes['api_request:ApiRequest']\n"
        "def fail(): raise RuntimeError('no driver here')\n"
        "broken.warm_up = fail\n"
        "attacks.warm_up()\n"
        "missing = [name for name in drivers[1:] if name not in sys.modules]\n"
        "assert not missing, missing\n"
        "print('warmed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "warmed" in done.stdout
    assert "could not warm up api_request:ApiRequest" in done.stderr
