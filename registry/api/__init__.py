"""The registry's HTTP side (aiohttp only): the app, its sub-applications and one error mapper per API."""
