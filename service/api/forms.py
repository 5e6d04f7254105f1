"""The forms a field of several forms takes, named so that its errors read as one.

A value may be a number, a digital state's name or a state object; a time a number of
seconds or ISO text. When none fits, pydantic reports one error per form, each under a
location it makes up from the form's schema (``records.0.values.T03.function-after[
_state_name(), dict[str,any]]``): three lines of internals for one wrong value. Each form
of such a union is tagged here, and :func:`collapse_forms` turns those errors back into one
problem per field, naming the forms the field takes, or the one complaint of a form whose
shape the value had (a state object without its name, a status code out of range).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Tag

# tag -> what the answer calls the form; the parentheses keep a tag apart from a field name
FORMS: Mapping[str, str] = {
    "(number)": "a number",
    "(state name)": "text (a number written as text, or a digital state's name)",
    "(state object)": "a digital state or error object ({'Name': ...}, {'Errors': [...]})",
    "(quality code)": "a number in the request's quality_encoding",
    "(quality word)": "a quality's symbol or word ('Good', 'Questionable', "
    "'BadNoCommunication', ...)",
    "(status object)": "an OPC UA status code ({'Code': ..., 'Symbol': ...}) or PI's flags "
    "({'Good': ..., 'Questionable': ..., 'Substituted': ...})",
    "(boolean)": "a boolean",
    "(seconds)": "a number (POSIX seconds)",
    "(iso time)": "ISO 8601 date and time text",
}
MAX_PROBLEMS = 20  # listed in one answer; a bad column of 100,000 values is not 100,000 lines


def form(name: str) -> Tag:
    """The tag of a union's form ``name`` (one of :data:`FORMS`, without parentheses)."""
    tag = f"({name})"
    if tag not in FORMS:
        raise KeyError(f"no form {name!r} in service.api.forms.FORMS")
    return Tag(tag)


def _reason(errors: list[Mapping[str, Any]]) -> str:
    complaints = [
        e["msg"].removeprefix("Value error, ") for e in errors if e["type"] == "value_error"
    ]
    if complaints:  # the value had that form's shape: its own complaint says most
        return "; ".join(dict.fromkeys(complaints))
    forms = list(dict.fromkeys(FORMS[e["loc"][-1]] for e in errors))
    return "expected " + (
        ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else forms[0]
    )


def collapse_forms(errors: Iterable[Mapping[str, Any]]) -> list[tuple[tuple[Any, ...], str]]:
    """(location, reason) per problem, the errors of one union's forms as one problem at the
    union's own location, in the order pydantic found them."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    group: list[Mapping[str, Any]] = []

    def close() -> None:
        if group:
            problems.append((tuple(group[0]["loc"][:-1]), _reason(group)))
            group.clear()

    for e in errors:
        loc = tuple(e["loc"])
        tagged = bool(loc) and isinstance(loc[-1], str) and loc[-1] in FORMS
        if group and (not tagged or tuple(group[0]["loc"][:-1]) != loc[:-1]):
            close()
        if tagged:
            group.append(e)
        else:
            problems.append((loc, e["msg"]))
    close()
    return problems
