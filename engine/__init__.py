"""The Dockyard engine: containers from the local image store, run by runc on overlayfs.

- `records`: what the engine knows of each container, persisted under the data root.
- `rootfs`: overlay mounts (image snapshots read-only, a writable container layer on top).
- `spec`: the OCI runtime spec (bundle) generated from an image config and create options.
- `shim` (its own process per container process), `runc`: running and supervising processes.
- `diff`, `commit`: a container layer's changes as a new layer and image.
- `containers`, `images`: the engine's operations, no HTTP; `api/`: the Docker Engine API on a
  Unix socket; `daemon`: `dockyardd`.

It uses `client/` (pull, push) and `client/store/`; nothing outside it imports it.
"""
