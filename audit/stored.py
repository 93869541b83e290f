"""Reading stored events whose data may be unreadable.

Events cannot be changed or deleted, so an event a server stored before the input limits
(`fcore.jsonlimits`) — data nested hundreds of levels deep, or a lone surrogate — stays in
its chain for good. Every reader must report such an event rather than fail: `audit_verify`
names it as a failure; the readers here (evidence pack, console) get each event with
`unreadable` set to the reason and `data` replaced by `{}`.

The data is read as text and parsed with orjson (which does not recurse in Python, and
refuses more than 1,024 levels with an error), so even a value that Django's own JSON
decoding would meet with a RecursionError is reported, not raised.
"""

import orjson
from django.db.models import TextField
from django.db.models.functions import Cast

from .jcs import loads_stored, unreadable


def stored_value(text):
    """(value, None) for stored JSON text that readers can walk, else (None, reason)."""
    try:
        value = orjson.loads(text) if isinstance(text, str | bytes) else text
    except orjson.JSONDecodeError:
        try:  # NaN and integers beyond 64 bits, as audit.verify reads them
            value = loads_stored(text)
        except (ValueError, RecursionError) as exc:
            return None, f"cannot be parsed ({type(exc).__name__}: {exc})"
    problem = unreadable(value)
    return (None, problem) if problem else (value, None)


def with_data_text(events):
    """The queryset reading each event's data as text (`data_text`), not through Django's
    JSON decoding; `events_marked` then parses it."""
    return events.defer("data").annotate(data_text=Cast("data", TextField()))


def events_marked(rows) -> list:
    """Events read by `with_data_text`, each with `unreadable` (None, or why its data
    cannot be read; its `data` is then `{}`)."""
    rows = list(rows)
    for event in rows:
        value, event.unreadable = stored_value(event.data_text)
        event.data = {} if event.unreadable else value
    return rows


def events_readable(events) -> list:
    """The events of a queryset, marked as `events_marked` does."""
    return events_marked(with_data_text(events))
