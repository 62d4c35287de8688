"""One error hierarchy for the core. Web maps each class to a status code in one table."""


class SortloopError(Exception):
    """Base of the domain errors; the message is shown to the user."""

    status_code = 500


class InvalidInput(SortloopError):
    status_code = 400


class NotFound(SortloopError):
    status_code = 404


class Conflict(SortloopError):
    status_code = 409


class ServiceUnavailable(SortloopError):
    status_code = 503
