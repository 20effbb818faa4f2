"""``python -m lightos_driver.cli_dc`` = ``lightos-discovery-client`` (no installed script needed)."""
import sys

from .cli import discovery_client_main

if __name__ == "__main__":
    sys.exit(discovery_client_main())
