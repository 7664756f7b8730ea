"""qfstack: deploy and operate a self-hosted QuFabric control plane with PocketID."""

__version__ = "0.1.0"
