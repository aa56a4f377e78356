"""initscope: network-initialisation analysis as a REST service."""

__version__ = "0.1.0"
