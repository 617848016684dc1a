"""The data model every Dockyard part shares: digests, names, media types and manifests.

Pure code: nothing here performs I/O or knows about HTTP, storage or the event loop.
"""
