"""Dockyard's registry server: the OCI Distribution API v1.1 over a storage backend."""
