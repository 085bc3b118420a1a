"""2017 import path ``chaosmonkey.drivers.ec2_driver``: the EC2 driver factory."""

from chalicelib.adapters.ec2 import EC2DriverFactory

__all__ = ["EC2DriverFactory"]
