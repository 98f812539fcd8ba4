"""Two helpers every service uses: find one row or raise ``NotFound``; assign only changes."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from sqlalchemy.orm import Session

from app.errors import NotFound

Row = TypeVar("Row")


def one_or_404(session: Session, statement: Select[tuple[Row]], what: str) -> Row:
    row = session.scalars(statement).first()
    if row is None:
        raise NotFound(f"{what} does not exist")
    return row


def assign(row: Any, values: dict[str, Any]) -> list[str]:
    """Set the attributes whose value differs; return their names (what ``apply`` reports)."""
    changed = []
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.append(name)
    return changed
