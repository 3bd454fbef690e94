"""MongoDB driver errors about data the server or BSON cannot store become ValidationError (a
400), naming the error class, never the data (issue 8: they were 500s)."""

from __future__ import annotations

import pytest
from bson.errors import InvalidDocument
from pymongo.errors import OperationFailure

from adapters.mongo import mongo_errors
from connector_core.errors import Unavailable, ValidationError


@pytest.mark.parametrize(
    "raised",
    [
        InvalidDocument("Key names must not contain the NULL byte: PLANTED\x00"),
        OverflowError("MongoDB can only handle up to 8-byte ints: PLANTED"),
        OperationFailure("The dollar ($) prefixed field 'PLANTED' is not valid for storage", code=52),
        OperationFailure("The dotted field 'PLANTED.x' is not valid for storage", code=57),
    ],
    ids=["nul-in-a-name", "int-beyond-64-bits", "dollar-prefixed", "dotted"],
)
def test_unstorable_data_is_a_validation_error_without_the_data(raised: Exception) -> None:
    with pytest.raises(ValidationError) as caught, mongo_errors("commit a unit of work"):
        raise raised
    assert "PLANTED" not in caught.value.message and "PLANTED" not in str(caught.value.metadata)
    assert type(raised).__name__ in caught.value.message
    assert caught.value.__cause__ is raised


def test_another_refusal_stays_unavailable() -> None:
    with pytest.raises(Unavailable), mongo_errors("commit a unit of work"):
        raise OperationFailure("not primary", code=10107)
