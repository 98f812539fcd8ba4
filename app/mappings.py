"""Who a user is in an upstream system (DOMAIN.md: Mapping).

An integration's ``user_mapping`` names where the upstream subject comes from:

- ``{"source": "mapping_table"}`` (the default): a row of ``UpstreamMapping`` for (integration,
  user id), filled by the admin API (and later CSV import and SCIM);
- ``{"source": "subject"}``: the User id itself;
- ``{"source": "email"}``: the user's email address as stored;
- ``{"source": "claim", "claim": "upn"}``: a string claim of the validated subject token;
- ``{"source": "template", "template": "${user_name}"}``: ``string.Template`` over the user's
  ``subject``, ``user_name``, ``email``, ``customer`` and ``external_id`` (``$`` substitution
  only: no attribute access, unlike ``str.format``).

No mapping, an empty result, or the user unknown or blocked is ``UserNotProvisioned``
(CONTRACT §3). The token endpoint and the mapping query both call ``resolve``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app import token_cache
from app.errors import InvalidInput, NotFound
from app.models import Integration, UpstreamMapping, User
from app.oauth_errors import UserNotProvisioned
from app.records import one_or_404

MAX_SUBJECT = 255


# Built once, bound per call: building a statement costs more than running it (bench/).
_MAPPED = select(UpstreamMapping.upstream_subject).where(
    UpstreamMapping.integration_pk == bindparam("integration_pk"),
    UpstreamMapping.subject == bindparam("subject"),
)


def upstream_subject(
    session: Session,
    integration: Integration,
    user: User | None,
    claims: Mapping[str, Any] | None = None,
) -> str:
    """The user's upstream subject in ``integration``, or ``UserNotProvisioned``."""
    mapped = None
    if user is not None and _source(integration) == "mapping_table":
        values = {"integration_pk": integration.id, "subject": user.subject}
        mapped = session.scalar(_MAPPED, values)
    return resolve(integration, user, claims, mapped)


def _source(integration: Integration) -> str:
    return (integration.user_mapping or {}).get("source", "mapping_table")


def resolve(
    integration: Integration,
    user: User | None,
    claims: Mapping[str, Any] | None,
    mapped: str | None,
) -> str:
    """``upstream_subject`` once the user's mapping row (``mapped``) has been read."""
    if user is None or user.blocked:
        raise UserNotProvisioned(integration.name)
    rule = integration.user_mapping or {"source": "mapping_table"}
    source = _source(integration)
    value: Any = None
    if source == "mapping_table":
        value = mapped
    elif source == "subject":
        value = user.subject
    elif source == "email":
        value = user.email
    elif source == "claim":
        value = (claims or {}).get(str(rule.get("claim", "")))
    elif source == "template":
        fields = {
            "subject": user.subject,
            "user_name": user.user_name,
            "email": user.email or "",
            "customer": user.customer or "",
            "external_id": user.external_id or "",
        }
        try:
            value = string.Template(str(rule.get("template", ""))).substitute(fields)
        except (KeyError, ValueError):
            value = None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_SUBJECT:
        raise UserNotProvisioned(integration.name)
    return value


# --- the mapping table (admin API) --------------------------------------------------------


def list_page(
    session: Session, integration: Integration, limit: int, after: str | None
) -> list[UpstreamMapping]:
    statement = (
        select(UpstreamMapping)
        .where(UpstreamMapping.integration_pk == integration.id)
        .order_by(UpstreamMapping.subject)
        .limit(limit)
    )
    if after:
        statement = statement.where(UpstreamMapping.subject > after)
    return list(session.scalars(statement))


def find(session: Session, integration: Integration, subject: str) -> UpstreamMapping:
    if not subject or "\x00" in subject or len(subject) > MAX_SUBJECT:
        raise NotFound(f"mapping of {subject!r} in {integration.name!r} does not exist")
    statement = select(UpstreamMapping).where(
        UpstreamMapping.integration_pk == integration.id, UpstreamMapping.subject == subject
    )
    return one_or_404(session, statement, f"mapping of {subject!r} in {integration.name!r}")


def put(
    session: Session,
    integration: Integration,
    subject: str,
    upstream: str,
    source: str = "api",
) -> tuple[UpstreamMapping, bool]:
    """Create or replace the mapping; return it and whether it was created."""
    if not subject or "\x00" in subject or len(subject) > MAX_SUBJECT:
        raise InvalidInput("a user id is 1 to 255 characters, no NUL", "subject")
    if not upstream.strip() or "\x00" in upstream or len(upstream) > MAX_SUBJECT:
        raise InvalidInput("an upstream subject is 1 to 255 characters", "upstream_subject")
    try:
        row = find(session, integration, subject)
    except NotFound:
        row = UpstreamMapping(
            tenant_id=integration.tenant_id,
            integration_pk=integration.id,
            subject=subject,
            upstream_subject=upstream,
            source=source,
        )
        session.add(row)
        session.flush()
        return row, True
    if row.upstream_subject != upstream:
        token_cache.purge_remapped_on(session, integration.tenant_id, [subject])
    row.upstream_subject, row.source = upstream, source
    return row, False


def delete(session: Session, row: UpstreamMapping) -> None:
    session.delete(row)
    token_cache.purge_remapped_on(session, row.tenant_id, [row.subject])


CSV_COLUMNS = ("user_id", "upstream_subject")  # CONTRACT §5


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


def import_rows(
    session: Session,
    integration: Integration,
    rows: Iterable[tuple[int, dict[str, str | None]]],
    progress: Callable[[int], None] = lambda _n: None,
) -> ImportReport:
    """Import ``user_id,upstream_subject`` rows (``(line, row)``) into the mapping table, in
    the caller's one transaction. Rows that cannot be stored are reported, not imported: an
    empty or too long value, a NUL, a user id given twice in the file (the command line then
    rolls the whole import back). Existing mappings are read once, so 100,000 rows cost one
    query plus the writes."""
    report = ImportReport()
    existing = {
        row.subject: row
        for row in session.scalars(
            select(UpstreamMapping).where(UpstreamMapping.integration_pk == integration.id)
        )
    }
    seen: set[str] = set()
    remapped: list[str] = []
    for line, values in rows:
        progress(1)
        subject = (values.get("user_id") or "").strip()
        upstream = (values.get("upstream_subject") or "").strip()
        problem = _row_problem(subject, upstream, seen)
        if problem:
            report.rejected.append((line, problem))
            continue
        seen.add(subject)
        row = existing.get(subject)
        if row is None:
            session.add(
                UpstreamMapping(
                    tenant_id=integration.tenant_id,
                    integration_pk=integration.id,
                    subject=subject,
                    upstream_subject=upstream,
                    source="import",
                )
            )
            report.created += 1
        elif row.upstream_subject != upstream:
            row.upstream_subject, row.source = upstream, "import"
            remapped.append(subject)
            report.updated += 1
        else:
            report.unchanged += 1
    session.flush()
    token_cache.purge_remapped_on(session, integration.tenant_id, remapped)
    return report


def _row_problem(subject: str, upstream: str, seen: set[str]) -> str | None:
    if not subject:
        return "user_id is empty"
    if not upstream:
        return "upstream_subject is empty"
    if len(subject) > MAX_SUBJECT or len(upstream) > MAX_SUBJECT:
        return f"a value is longer than {MAX_SUBJECT} characters"
    if "\x00" in subject + upstream:
        return "a value contains a NUL character"
    if subject in seen:
        return f"user_id {subject!r} appears more than once in the file"
    return None


# --- the SCIM extension (idbridge User schema, ``upstreamIdentities``) ---------------------

SCIM_SOURCE = "scim"


def sync_from_scim(session: Session, subject: str, identities: Any) -> None:
    """Make the user's SCIM-sourced mappings match ``upstreamIdentities`` of its SCIM resource.

    Entries naming an integration the tenant does not have are kept in the resource only (the
    identity provider may know integrations before the operator adds them); rows that came
    from the admin API or an import are replaced only where SCIM names the same integration.
    """
    wanted: dict[int, str] = {}
    by_name = {row.name: row for row in session.scalars(select(Integration))}
    for entry in identities if isinstance(identities, list) else []:
        if not isinstance(entry, dict):
            continue
        integration = by_name.get(str(entry.get("integration") or ""))
        upstream = entry.get("subject")
        if integration is not None and isinstance(upstream, str) and upstream.strip():
            wanted[integration.id] = upstream.strip()[:MAX_SUBJECT]
    rows = session.scalars(select(UpstreamMapping).where(UpstreamMapping.subject == subject))
    for row in rows:
        if row.integration_pk not in wanted and row.source == SCIM_SOURCE:
            delete(session, row)
    for integration_pk, upstream in wanted.items():
        put(session, session.get(Integration, integration_pk), subject, upstream, SCIM_SOURCE)


def forget_scim_subject(session: Session, subject: str) -> None:
    """Drop the SCIM-sourced mappings of a user id that no longer exists (or was renamed)."""
    statement = select(UpstreamMapping).where(
        UpstreamMapping.subject == subject, UpstreamMapping.source == SCIM_SOURCE
    )
    for row in session.scalars(statement):
        delete(session, row)
