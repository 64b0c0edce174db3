"""genbench: benchmark generative models x optimization pipelines x devices.

Importing this package is cheap: torch and the backends load when a command needs them.
"""

__version__ = "0.1.0"
