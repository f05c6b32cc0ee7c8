"""box_speed: an example third-party vpd-stream plugin (see docs/plugins.md)."""
from .plugin import BoxSpeed, BoxSpeedPlugin

__all__ = ["BoxSpeed", "BoxSpeedPlugin"]
