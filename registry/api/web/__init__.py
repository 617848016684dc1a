"""The registry's web page: sign in, browse and search repositories, read tags, images and
layers, and change repository settings.

Server-rendered HTML (Jinja2, autoescaped) over the same `Services` and Hub permission rules as
the APIs; one CSS file and a tiny copy-to-clipboard script, nothing fetched from elsewhere.
`views` gathers data (no HTTP), `routes` holds the thin handlers, `session` the signed cookie
and CSRF tokens, `render` the templates. It never changes anything the APIs could not.
"""

from .routes import add_web_routes

__all__ = ["add_web_routes"]
