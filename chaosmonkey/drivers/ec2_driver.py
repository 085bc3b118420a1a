"""2017 import path ``chaosmonkey.drivers.ec2_driver``: the EC2 driver factory.

A 2017 plugin calls ``EC2DriverFactory().get_driver()`` inside its ``run`` and cannot be
handed the engine's settings; this class takes the region and EC2 endpoint it leaves out
from the context of the attack being run (local mode's moto EC2, ``CME_EC2_ENDPOINT``).
"""

from __future__ import annotations

from chalicelib.adapters import ec2
from chalicelib.plugins.contract import active_context


class EC2DriverFactory(ec2.EC2DriverFactory):
    """``chalicelib.adapters.ec2.EC2DriverFactory`` with the running attack's defaults."""

    def __init__(self, region: str | None = None, endpoint: str | None = None) -> None:
        context = active_context()
        if context is not None:
            region = region or context.environment.aws_region
            endpoint = endpoint or context.environment.ec2_endpoint
        super().__init__(region, endpoint)


__all__ = ["EC2DriverFactory"]
