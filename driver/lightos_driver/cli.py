"""Placeholder until the commands land."""


def main() -> int:
    return 0


def discovery_client_main() -> int:
    return 0
