"""2017 import path ``chaosmonkey.drivers``: the engine's Libcloud driver factories."""

from chaosmonkey.drivers.ec2_driver import EC2DriverFactory

__all__ = ["EC2DriverFactory"]
