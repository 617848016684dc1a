"""The Hub around the registry: accounts, organizations, repository settings, access control.

All of its state lives in the storage backend under `hub/`, so every replica sees every write;
nothing here is cached across requests.
"""
