"""Field types shared by the message models: strict where JSON is ambiguous."""

import re
from datetime import date
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, StrictBool, StrictStr

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date_string(value: Any) -> Any:
    # Python-mode validation would accept ints and datetimes as dates; the wire
    # carries dates only as "YYYY-MM-DD" strings.
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError(f"must be a date string YYYY-MM-DD, got {value!r}")
    return date.fromisoformat(value)


IsoDate = Annotated[date, BeforeValidator(_iso_date_string)]
# Identifiers are printable: no control characters (PostgreSQL text cannot even hold U+0000).
Id = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Text = Annotated[StrictStr, Field(max_length=2000, pattern=r"^[^\x00]*$")]
# Bounded above: counts beyond any real subscription would not fit the stores' 64-bit integers.
MAX_COUNT = 1_000_000
PositiveCount = Annotated[int, Field(strict=True, ge=1, le=MAX_COUNT)]
Flag = StrictBool
