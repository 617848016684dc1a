"""aiohttp handlers of the distribution API, one module per resource. Each handler is thin:
parse and validate the request, call one domain method, turn the result into a response."""
