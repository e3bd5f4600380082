"""Product times as the readers find them in headers and tags."""

from __future__ import annotations

import datetime as _dt
import logging
import re

log = logging.getLogger(__name__)


def parse_datetime(text: str | None) -> _dt.datetime | None:
    """A UTC datetime from ISO 8601, TIFF (``YYYY:MM:DD HH:MM:SS``) or date-only text.

    Returns None (and logs) when `text` is empty or not a date.
    """
    if not text or not str(text).strip():
        return None
    s = str(text).strip()
    m = re.match(r"^(\d{4}):(\d{2}):(\d{2})[ T](\d{2}:\d{2}:\d{2})$", s)
    if m:  # TIFFTAG_DATETIME
        s = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}"
    try:
        value = _dt.datetime.fromisoformat(s)
    except ValueError:
        log.info("not a date/time: %r", s)
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return value.astimezone(_dt.timezone.utc)
