"""labtwin hosts: master/node01/node02 as namespaces + overlay roots + systemd on one machine."""
from .config import TwinConfig, TwinError
from .lab import down, is_up, leftovers, status, up

__all__ = ["TwinConfig", "TwinError", "up", "down", "status", "is_up", "leftovers"]
