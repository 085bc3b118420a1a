"""2017 import path ``chaosmonkey.drivers``: the engine's Libcloud driver factories."""

from chalicelib.adapters.ec2 import EC2DriverFactory

__all__ = ["EC2DriverFactory"]
