"""Domain errors raised by the data functions; the web layer maps them to HTTP codes."""


class DomainError(Exception):
    """Base class. ``str(err)`` is a message fit to show a user."""

    status_code = 400


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class PermissionDenied(DomainError):
    status_code = 403


class InvalidInput(DomainError):
    status_code = 422


class LeaseLost(Conflict):
    """The task's lease expired or belongs to someone else; the work was kept as a draft."""


class DatabaseBehind(DomainError):
    """The database schema is older than the code; run ``dataengine db upgrade``."""

    status_code = 503
