"""What the Hub refuses, by kind; the admin API maps each kind to a status in one place
(`registry.api.admin`)."""

from __future__ import annotations


class HubError(Exception):
    """A request the Hub refuses as invalid."""


class NotFound(HubError):
    """No such user, organization, token, repository or webhook (as far as the caller may know)."""


class Conflict(HubError):
    """The name is taken or reserved."""


class InvalidAccountName(HubError, ValueError):
    """Also a ValueError, so a pydantic validator turns it into a validation error."""
