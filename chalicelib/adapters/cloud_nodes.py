"""Nodes of any Libcloud compute provider: build its driver, find nodes, act on them.

The driver is built from values the caller has already resolved (secrets come from
``chalicelib.adapters.secrets``); nothing here logs or returns them. Every request the
driver sends (and every redirect it follows) passes the outbound guard of
``chalicelib.adapters.http``: no link-local or instance-metadata address.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.adapters.http import (
    OutboundRefused,
    Resolver,
    check_url,
    guard_session,
)
from chalicelib.plugins.secret_policy import OutboundPolicy, as_url, names_a_host

# The driver method behind each action an attack may ask for.
ACTIONS = {"terminate": "destroy_node", "stop": "stop_node", "reboot": "reboot_node"}


class NodeError(Exception):
    """The provider, its driver or one of its calls failed; the message says which."""


@dataclass(frozen=True)
class CloudNode:
    """A node as the attacks report it."""

    id: str
    name: str
    state: str
    public_ips: tuple[str, ...]
    private_ips: tuple[str, ...]
    node: Any = field(repr=False, compare=False)
    tags: Mapping[str, str] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "public_ips": list(self.public_ips),
            "private_ips": list(self.private_ips),
        }


# Where Libcloud drivers keep a node's tags: EC2 and Azure ``tags``, GCE ``labels``
# (its ``tags`` are a list of network tags, not a mapping), OpenStack ``metadata``.
TAG_FIELDS = ("tags", "labels", "metadata")


def node_tags(node: Any) -> dict[str, str]:
    """A Libcloud node's tags (key -> value); empty when its driver shows none.

    Empty, not unknown: a node is a cloud resource that could carry the engine's opt-in
    tag, so one whose tags cannot be read is treated as carrying none (fails closed)."""
    extra = getattr(node, "extra", None) or {}
    for name in TAG_FIELDS:
        found = extra.get(name)
        if isinstance(found, Mapping):
            return {str(key): str(value) for key, value in found.items()}
    return {}


def _driver_errors() -> tuple[type[Exception], ...]:
    from libcloud.common.exceptions import BaseHTTPError
    from libcloud.common.types import LibcloudError

    return (LibcloudError, BaseHTTPError, OSError, OutboundRefused)


def guard_driver(driver: Any, policy: OutboundPolicy, resolve: Resolver | None = None) -> Any:
    """``driver`` whose connections send through the outbound guard (returned as is).

    Libcloud opens its HTTP connection lazily, from the class ``connection.conn_class``;
    the guarded subclass mounts the guard on that connection's requests session, so the
    check runs before every request and every redirect hop the driver follows.
    """
    connection = getattr(driver, "connection", None)
    if connection is None or not hasattr(connection, "conn_class"):
        return driver
    base = connection.conn_class

    class GuardedConnection(base):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            guard_session(self.session, policy, resolve)

    connection.conn_class = GuardedConnection
    if getattr(connection, "connection", None) is not None:
        # Already connected while it was built (a few drivers authenticate at once).
        guard_session(connection.connection.session, policy, resolve)
    return driver


def node_driver(
    provider: str,
    key: str | None,
    secret: str | None,
    options: Mapping[str, Any],
    *,
    outbound: OutboundPolicy | None = None,
    resolve: Resolver | None = None,
) -> Any:
    """A Libcloud compute driver for ``provider`` (a Libcloud provider name like ``gce``).

    ``key`` and ``secret`` are the driver's first two positional arguments, when given.
    Only providers Libcloud registers can be built: a name never imports anything else.
    Its requests pass the outbound guard (``outbound`` None: the default policy).
    """
    from libcloud.compute.providers import get_driver

    try:
        driver_class = get_driver(provider)
    except AttributeError:
        raise NodeError(f"Libcloud has no compute provider {provider!r}") from None
    positional = [value for value in (key, secret) if value is not None]
    policy = outbound or OutboundPolicy()
    # Some drivers authenticate while they are built, before the guard is on their
    # connection: check the hosts their options name first.
    for name, value in options.items():
        if isinstance(value, str) and names_a_host(name):
            check_url(as_url(value), policy, resolve)
    try:
        driver = driver_class(*positional, **options)
    except TypeError as error:
        raise NodeError(
            f"the {provider!r} driver does not take these arguments "
            f"(key {'given' if key is not None else 'absent'}, "
            f"secret {'given' if secret is not None else 'absent'}, "
            f"options {sorted(options)}): {error}"
        ) from None
    except _driver_errors() as error:
        raise NodeError(f"the {provider!r} driver could not be built: {error}") from None
    return guard_driver(driver, policy, resolve)


class CloudNodes:
    """The nodes one driver sees, found by name pattern and provider filters."""

    def __init__(self, provider: str, driver: Any) -> None:
        self.provider = provider
        self.driver = driver

    def supports(self, action: str) -> bool:
        """Whether the driver implements ``action`` (Libcloud's base class raises)."""
        from libcloud.compute.base import NodeDriver

        method = ACTIONS[action]
        return getattr(type(self.driver), method, None) is not getattr(NodeDriver, method)

    def supports_filters(self) -> bool:
        """Whether the driver's ``list_nodes`` takes provider filters (``ex_filters``)."""
        try:
            parameters = inspect.signature(self.driver.list_nodes).parameters
        except (TypeError, ValueError):
            return False
        return "ex_filters" in parameters

    def find(
        self, name_pattern: str, filters: Mapping[str, Any] | None, states: Iterable[str]
    ) -> list[CloudNode]:
        """Nodes whose name matches the glob ``name_pattern`` and whose state is in ``states``.

        ``filters`` go to the provider (``list_nodes(ex_filters=...)``); a driver that
        takes none is refused rather than having the filters silently ignored.
        """
        if filters and not self.supports_filters():
            raise NodeError(f"the {self.provider!r} driver cannot filter nodes; remove 'filters'")
        try:
            nodes = (
                self.driver.list_nodes(ex_filters=dict(filters))
                if filters
                else (self.driver.list_nodes())
            )
        except _driver_errors() as error:
            raise NodeError(f"listing {self.provider} nodes failed: {error}") from None
        wanted = {str(state).lower() for state in states}
        found = []
        for node in nodes:
            name = str(node.name or "")
            state = str(node.state).lower()
            if fnmatch.fnmatchcase(name, name_pattern) and state in wanted:
                found.append(
                    CloudNode(
                        id=str(node.id),
                        name=name,
                        state=state,
                        public_ips=tuple(str(ip) for ip in node.public_ips or ()),
                        private_ips=tuple(str(ip) for ip in node.private_ips or ()),
                        node=node,
                        tags=node_tags(node),
                    )
                )
        return found

    def act(self, action: str, target: CloudNode) -> None:
        """Terminate, stop or reboot ``target``; NodeError if the provider did not confirm."""
        if not self.supports(action):
            raise NodeError(f"the {self.provider!r} driver cannot {action} nodes")
        try:
            done = getattr(self.driver, ACTIONS[action])(target.node)
        except NotImplementedError:
            raise NodeError(f"the {self.provider!r} driver cannot {action} nodes") from None
        except _driver_errors() as error:
            raise NodeError(f"{action} {target.name} ({target.id}) failed: {error}") from None
        if done is False:
            raise NodeError(f"{self.provider} did not confirm the {action} of {target.id}")
