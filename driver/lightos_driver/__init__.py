"""LightOS volume driver: attach Lightbits LightOS volumes to libvirt guests over NVMe/TCP.

Four parts, each usable alone, all built on pynvmetcp's public API:

* ``connector.LightOSConnector`` — os-brick's LightOSConnector interface: writes the
  discovery-client entry file for a volume and finds its block device by UUID.
* ``libvirt_volume.LibvirtLightOSVolumeDriver`` — nova's libvirt volume driver interface, plus the
  local attachment record that makes a restart recoverable.
* ``discovery`` — the discovery-client service (``lightos-discovery-client serve``): entry files →
  persistent discovery connections → kernel I/O controllers.
* ``reconnect`` — after a host reboot, re-establish every LightOS volume of every instance.

Every filesystem location is a parameter (``paths.Paths``) so the whole driver runs on temp dirs.
"""
from .errors import DeviceNotFound, EntryFileError, LightOSError
from .paths import Paths

__all__ = ["Paths", "LightOSError", "DeviceNotFound", "EntryFileError"]
__version__ = "0.1.0"
