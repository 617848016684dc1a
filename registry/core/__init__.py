"""The registry's domain: storage layout, blobs, uploads, manifests, repositories, gc and the Hub.

Nothing here knows HTTP: no web framework, no URLs, no headers. `registry.api` maps it onto the wire.
"""
