"""The one place where MongoDB driver errors become ours (:func:`mongo_errors`): connection
failures and timeouts become :class:`Unavailable`; so do write conflicts that outlasted the
time limit; duplicate keys become :class:`Conflict`; a commit whose answer never came is
:class:`CommitOutcomeUnknown`; a document BSON cannot encode (a field name with NUL, an integer
beyond 64 bits) is :class:`ValidationError`. Messages name the operation and the exception
class, never document contents."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from bson.errors import InvalidDocument
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from adapters.health import Refused
from connector_core.errors import CommitOutcomeUnknown, Conflict, Unavailable, ValidationError

#: the setting that points the service at MongoDB (named in start-up errors)
MONGO_URL_SETTING = "mongo_url (CM_MONGO_URL)"

_WRITE_CONFLICT = 112
_AUTHENTICATION_FAILED = 18
_DUPLICATE_KEY = 11000
_ILLEGAL_OPERATION = 20
#: DollarPrefixedFieldName, EmptyFieldName, DottedFieldName: a name the server will not store
#: (where it does not allow them, as servers before MongoDB 5.0 did not)
_UNSTORABLE_NAME = {52, 56, 57}


def refused_if_credentials(exc: OperationFailure) -> None:
    """:class:`Refused` when ``exc`` is the server refusing our credentials (start-up stops at once
    on it); the server's text is not kept."""
    if exc.code == _AUTHENTICATION_FAILED:
        raise Refused("authentication failed: check the user and password in the MongoDB URL") from None


def _is_write_conflict(exc: PyMongoError) -> bool:
    if isinstance(exc, ConnectionFailure):
        return False  # the network, not a conflict
    return exc.has_error_label("TransientTransactionError") or getattr(exc, "code", None) == _WRITE_CONFLICT


def _is_duplicate_key(exc: PyMongoError) -> bool:
    if isinstance(exc, DuplicateKeyError):
        return True
    if isinstance(exc, BulkWriteError):
        return any(e.get("code") == _DUPLICATE_KEY for e in exc.details.get("writeErrors", []))
    return False


def _underlying(exc: PyMongoError) -> PyMongoError:
    """The error that decided the outcome: ``with_transaction`` wraps the last error it retried
    in a timeout error once its time is up (keeping the labels)."""
    cause = exc.__cause__
    if exc.timeout and isinstance(cause, PyMongoError) and cause is not exc:
        return cause
    return exc


def unreachable(exc: BaseException) -> bool:
    """The server did not answer (down, hung, too slow): our last request may still be running there."""
    if not isinstance(exc, PyMongoError):
        return False
    return exc.timeout or isinstance(_underlying(exc), ConnectionFailure)


@contextlib.contextmanager
def mongo_errors(action: str) -> Iterator[None]:
    """Translate driver exceptions raised while doing ``action`` (re-raised ``from exc``)."""
    try:
        yield
    except (InvalidDocument, OverflowError) as unstorable:
        # raised while encoding, before the write went out (the message may quote the data)
        raise _unstorable(action, type(unstorable).__name__) from unstorable
    except PyMongoError as raised:
        exc = _underlying(raised)
        name = type(exc).__name__
        if raised.has_error_label("UnknownTransactionCommitResult"):
            raise CommitOutcomeUnknown(
                f"MongoDB did not answer while committing ({action}, {name}); the outcome is unknown: "
                "reload before retrying",
                metadata={"dependency": "mongo"},
            ) from raised
        if isinstance(exc, ConnectionFailure):
            raise Unavailable(f"MongoDB is unreachable ({name}) while trying to {action}") from exc
        if isinstance(exc, OperationFailure) and exc.code in _UNSTORABLE_NAME:
            raise _unstorable(action, name) from exc
        if _is_duplicate_key(exc):
            raise Conflict(f"could not {action}: the record already exists; retry") from exc
        if _is_write_conflict(exc):
            # with_transaction retried until its time was up: something holds the documents
            raise Unavailable(
                f"MongoDB kept the documents locked ({name}) while trying to {action}; retry later"
            ) from exc
        code = getattr(exc, "code", None)
        if code == _ILLEGAL_OPERATION and "transaction" in str(getattr(exc, "details", None) or "").lower():
            raise Unavailable(standalone_message()) from exc
        if raised.timeout:
            raise Unavailable(f"MongoDB timed out ({name}) while trying to {action}") from exc
        code_name = exc.details.get("codeName") if isinstance(exc, OperationFailure) and exc.details else None
        detail = " ".join(str(x) for x in (name, code, code_name) if x)
        raise Unavailable(f"MongoDB refused to {action} ({detail})") from exc


def _unstorable(action: str, name: str) -> ValidationError:
    """The data cannot be stored as it is (named by the error class only: the driver's and the
    server's messages quote the data)."""
    return ValidationError(
        f"MongoDB cannot store this data ({name}) while trying to {action}: a field name it does not"
        " allow (NUL, or a leading '$' or '.' on older servers) or an integer beyond 64 bits",
        errors=[{"path": "body", "message": "holds a value or field name the database cannot store"}],
    )


def standalone_message() -> str:
    return (
        "MongoDB at the configured address is a standalone server without multi-document "
        f"transactions; point the {MONGO_URL_SETTING} setting at a replica set "
        "(a one-node set is enough: mongod --replSet rs0, then rs.initiate())"
    )
