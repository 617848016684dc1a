"""Dockyard's client: reference parsing, registry auth and transfer, pull/push, and the local layered image store."""
