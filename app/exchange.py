"""RFC 8693 token exchange for the data broker (CONTRACT §3), as a pipeline of named steps.

authenticate the client -> validate the subject token -> authorise (integration, grant,
scope) -> resolve the user -> map to the upstream identity -> obtain the upstream token (cache,
else the integration's handler; remote handlers behind the circuit breaker and negative cache
of ``app.upstream_guard``) -> audit -> respond.

Delegation (an actor token, ``validate_actor``) and impersonation (none, at an integration
whose upstream issues the token: ``_impersonation``) are decided on the subject token's
top-level claims and the current actor only, and both are audited.

Each step raises an ``app.oauth_errors`` error that ``oauth.exchange`` renders once (RFC 6749
§5.2 JSON, ``Cache-Control: no-store``). The steps up to the mapping, and the cache lookup
(``app.token_cache``: one row, or one Redis read), run in one read transaction (a
``private_key_jwt`` assertion's ``jti`` is spent in a write transaction of its own, at client
authentication: ``authenticate_client``); on a miss the upstream token is obtained outside any
transaction, in a single flight across the deployment (an upstream call never holds a
database lock; the signing key and the integration's secret are loaded only then: a cache hit
signs and opens nothing); the audit row is written in its own short write transaction. After
an upstream call that transaction first checks again, under the locks revocations take, that
the grant is still active and the user's session not revoked, then caches the token: a grant
revoked while the upstream answered is still refused and leaves nothing cached; a cache hit
read both moments before, and revoking either purges the cached token in the revoking
transaction. Every outcome, success or refusal, is audited; when the audit write fails the
exchange fails (503) and no token leaves.

The mapping query (``mapping``) shares the first steps and ``app.mappings.upstream_subject``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app import (
    assertions,
    audit,
    clients,
    integrations,
    mappings,
    oidc,
    signing,
    tenancy,
    tenants,
    token_cache,
)
from app.errors import Conflict, DomainError, StoreUnavailable
from app.models import Client, Grant, Integration, Tenant, UpstreamMapping, User
from app.oauth_errors import (
    InvalidClient,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    OAuthError,
    TemporarilyUnavailable,
    UnauthorizedClient,
    UnsupportedGrantType,
    UserNotProvisioned,
)
from app.runtime import Runtime
from app.token_cache import CacheKey
from app.tokens import InvalidToken, KeysUnavailable, TokenValidator, VerifiedToken
from app.upstream import Target, UpstreamRequest, UpstreamToken
from app.upstream_guard import UpstreamGuard
from app.upstream_remote import handler_for

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})
REQUESTABLE_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE})
EXCHANGE = "token_exchange"
MAPPING_QUERY = "mapping_query"


@dataclass(frozen=True)
class ClientCredentials:
    """How the client authenticated: a secret (RFC 6749 §2.3.1) or a signed assertion
    (``private_key_jwt``, RFC 7523 §2.2); ``method`` names it."""

    client_id: str
    secret: str
    method: str
    assertion: str = ""


@dataclass(frozen=True)
class ExchangeRequest:
    """The RFC 8693 §2.1 parameters as the edge parsed them (repeated ones as tuples)."""

    grant_type: str
    subject_token: str
    subject_token_type: str
    audiences: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    scope: str | None = None
    requested_token_type: str | None = None
    actor_token: str | None = None
    actor_token_type: str | None = None


@dataclass(frozen=True)
class TokenResponse:
    """RFC 8693 §2.2.1."""

    access_token: str
    issued_token_type: str
    token_type: str
    expires_in: int
    scope: str | None = None
    extra: tuple[tuple[str, str], ...] = ()  # e.g. Salesforce's instance_url

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(self.extra) | {
            "access_token": self.access_token,
            "issued_token_type": self.issued_token_type,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
        }
        if self.scope is not None:
            body["scope"] = self.scope
        return body


@dataclass(frozen=True)
class MappingAnswer:
    integration: str
    subject: str
    upstream_subject: str


@dataclass
class _Decision:
    """What the read steps decided: enough to obtain and audit without the rows."""

    tenant_id: int
    grant_id: int
    token: VerifiedToken
    request: UpstreamRequest
    cache_key: CacheKey
    scopes: tuple[str, ...] = field(default_factory=tuple)
    note: str = ""  # recorded as the success's reason (impersonation)
    sealed_secret: tuple[str, str] | None = None  # (sealed, context), opened on a miss only


# --- the steps ----------------------------------------------------------------------------


def authenticate_client(
    session: Session, rt: Runtime, slug: str, credentials: ClientCredentials
) -> Client:
    """The client, in the session's tenant only: by its secret (RFC 6749 §2.3.1, basic or
    post) or by a ``private_key_jwt`` assertion signed with one of its registered keys
    (``app.assertions.authenticate``, RFC 7523). Every endpoint that authenticates clients
    calls this, from a read transaction: an assertion's ``jti`` is spent here, committed in a
    write transaction of its own before anything else happens (§3 item 7); a secret costs no
    write at all."""
    if credentials.method == "private_key_jwt":
        audiences = (issuer_of(rt, slug), issuer_of(rt, slug) + "/oauth/token")
        return assertions.authenticate(
            session, rt.db, credentials.client_id, credentials.assertion, audiences
        )
    if not credentials.client_id or not credentials.secret:
        raise InvalidClient("client authentication failed")
    client = clients.authenticate(session, rt.keyring, credentials.client_id, credentials.secret)
    if client is None:
        raise InvalidClient("client authentication failed")
    return client


def validate_subject_token(
    session: Session, tenant: Tenant, validator: TokenValidator, token: str, token_type: str
) -> VerifiedToken:
    """RFC 8693 §2.1: the subject token is an access token of the tenant's trusted issuer.

    ``subject_token_type`` must be the access token or JWT type, and the token must then be an
    access token (``TokenValidator.access_token``: ID, refresh and logout tokens are refused,
    as are tokens of another issuer, audience or tenant, and idbridge's own tokens, whose
    issuer is not the IdP). A revoked session is refused too. Refusals are ``invalid_request``
    (§2.2.2).
    """
    if token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest("unsupported subject_token_type")
    try:
        issuer = oidc.TrustedIssuer.of(tenant.identity_provider)
        verified = validator.access_token(issuer, token)
    except InvalidToken as exc:
        raise InvalidRequest(f"subject_token refused: {exc.message}") from None
    except KeysUnavailable as exc:
        raise TemporarilyUnavailable(exc.message) from None
    if "\x00" in verified.subject + (verified.session_id or ""):
        raise InvalidRequest("subject_token refused: its subject is malformed")
    if oidc.is_session_revoked(session, verified):
        raise InvalidRequest("subject_token refused: the session of this token has ended")
    return verified


MAX_ACT_DEPTH = 5


def validate_actor(
    session: Session,
    tenant: Tenant,
    validator: TokenValidator,
    client: Client,
    subject: VerifiedToken,
    request: ExchangeRequest,
) -> tuple[str, ...]:
    """Delegation (RFC 8693 §1.1): the actor chain, oldest first, ending with the client.

    The client must be allowed to delegate (``may_delegate``); the actor token is an access
    token of the tenant's issuer that names the authenticated client (``client_id``, else
    ``azp``, else the subject claim): an actor is never someone else. A ``may_act`` claim in
    the subject token (§4.4) must name that actor. Earlier actors come from the subject
    token's ``act`` (§4.1), kept in the issued token and never used for a decision.
    """
    if not client.may_delegate:
        raise InvalidRequest("this client may not act for users (delegation is not allowed)")
    if not request.actor_token or request.actor_token_type not in SUBJECT_TOKEN_TYPES:
        raise InvalidRequest("actor_token needs a supported actor_token_type")
    try:
        issuer = oidc.TrustedIssuer.of(tenant.identity_provider)
        actor_token = validator.access_token(issuer, request.actor_token)
    except InvalidToken as exc:
        raise InvalidRequest(f"actor_token refused: {exc.message}") from None
    except KeysUnavailable as exc:
        raise TemporarilyUnavailable(exc.message) from None
    claims = actor_token.claims
    actor = claims.get("client_id") or claims.get("azp") or actor_token.subject
    if actor != client.client_id:
        raise InvalidRequest("the actor token is not the authenticated client's")
    may_act = subject.claims.get("may_act")
    if may_act is not None and (not isinstance(may_act, dict) or may_act.get("sub") != actor):
        raise InvalidRequest("the subject token's may_act does not allow this actor")
    earlier: list[str] = []
    act = subject.claims.get("act")
    while isinstance(act, dict) and len(earlier) < MAX_ACT_DEPTH:
        if isinstance(act.get("sub"), str):
            earlier.append(act["sub"][:255])
        act = act.get("act")
    return (*reversed(earlier), client.client_id)


# Built once, bound per call: building a statement costs more than running it (bench/). Each
# integration comes with the client's grant for it, if any; for the exchange, also with the user
# the subject token names and their row of the integration's mapping table, if any: the reads of
# a decision after the client's and the token's are one round trip, not three.
_WITH_GRANT = select(Integration, Grant).outerjoin(
    Grant, and_(Grant.integration_pk == Integration.id, Grant.client_pk == bindparam("client_pk"))
)
_WITH_USER = (
    _WITH_GRANT.add_columns(User, UpstreamMapping.upstream_subject)
    .outerjoin(User, User.subject == bindparam("subject"))
    .outerjoin(
        UpstreamMapping,
        and_(
            UpstreamMapping.integration_pk == Integration.id,
            UpstreamMapping.subject == User.subject,
        ),
    )
)
_BY_AUDIENCE = _WITH_USER.where(
    or_(Integration.name == bindparam("value"), Integration.audience == bindparam("value"))
).limit(2)
_BY_RESOURCE = _WITH_USER.where(
    or_(Integration.resource == bindparam("value"), Integration.audience == bindparam("value"))
).limit(2)
_BY_NAME = _WITH_GRANT.where(Integration.name == bindparam("value"))


class Found(NamedTuple):
    """What ``find_integration`` read: the integration, the client's grant for it, the user the
    subject token names and the user's row of its mapping table (each ``None`` if absent)."""

    integration: Integration
    grant: Grant | None
    user: User | None
    mapped: str | None


def find_integration(
    session: Session,
    client: Client,
    audiences: Sequence[str],
    resources: Sequence[str],
    subject: str,
) -> Found:
    """The one integration the ``audience`` (name or upstream audience URI) and ``resource``
    (upstream URI) values name (RFC 8693 §2.1), with ``client``'s grant for it and the user
    ``subject`` with their mapping there; anything else is ``invalid_target``."""
    found: dict[int, Found] = {}
    targets = [(value, False) for value in audiences] + [(value, True) for value in resources]
    if not targets:
        raise InvalidRequest("audience or resource is required")
    for value, is_resource in targets:
        if not value or len(value) > 2000:
            raise InvalidTarget("unknown audience or resource")
        statement = _BY_RESOURCE if is_resource else _BY_AUDIENCE
        values = {"value": value, "client_pk": client.id, "subject": subject}
        matches = session.execute(statement, values).all()
        if len(matches) != 1:
            raise InvalidTarget("unknown or ambiguous audience or resource")
        match = Found(*matches[0])
        found[match.integration.id] = match
    if len(found) != 1:
        raise InvalidTarget("one exchange names one integration")
    return next(iter(found.values()))


def authorise(
    client: Client, integration: Integration, grant: Grant | None, scope: str | None
) -> tuple[Grant, tuple[str, ...]]:
    """The client may ask for this integration (its ``audiences``), holds an active grant
    (``grant``, as ``find_integration`` read it), and asks only for scopes in its allow-list:
    never widened, never silently narrowed."""
    if integration.name not in (client.audiences or []):
        raise InvalidTarget("the audience is not allowed for this client")
    if grant is None or grant.revoked_at is not None:
        raise UnauthorizedClient("the client has no active grant for this integration")
    requested = tuple(dict.fromkeys((scope or "").split()))
    if scope is not None and not requested:
        raise InvalidScope("the scope parameter is empty")
    allowed = set(client.scopes or [])
    beyond = [item for item in requested if item not in allowed]
    if beyond:
        raise InvalidScope(f"scope {beyond[0][:100]!r} is not allowed for this client")
    return grant, requested


def resolve_user(integration: Integration, user: User | None) -> User:
    """The tenant's known, unblocked user the token names (``find_integration`` read it), else
    ``user_not_provisioned``."""
    if user is None or user.blocked:
        raise UserNotProvisioned(integration.name)
    return user


def _target(integration: Integration) -> Target:
    return Target(
        name=integration.name,
        kind=integration.kind,
        audience=integration.audience,
        token_lifetime=integration.token_lifetime,
        scope_mapping=dict(integration.scope_mapping or {}),
        settings=dict(integration.settings or {}),
        flow=integration.flow or "",
        resource=integration.resource,
        token_endpoint=integration.token_endpoint,
        client_id=integration.client_id,
    )


def issuer_of(rt: Runtime, slug: str) -> str:
    """The tenant's issuer for the tokens idbridge signs: ``{public_url}/t/{slug}``."""
    return f"{rt.settings.public_url.rstrip('/')}/t/{slug}"


# --- the pipeline -------------------------------------------------------------------------


def exchange(
    rt: Runtime,
    validator: TokenValidator,
    guard: UpstreamGuard,
    slug: str,
    credentials: ClientCredentials,
    request: ExchangeRequest,
    request_id: str = "",
) -> TokenResponse:
    """Run the exchange and audit its outcome; raise the refusal, audited, on failure.

    ``NotFound`` (no such tenant) is raised unaudited: there is no tenant to record it in.
    """
    entry = audit.Entry(
        action=EXCHANGE,
        request_id=request_id,
        client_id=credentials.client_id,
        audience=" ".join(request.audiences + request.resources),
        scope=request.scope or "",
    )
    tenant_id: int | None = None  # an int: a refusal rolls back (and expires) the tenant row
    try:
        with rt.db.read() as session:
            tenant = tenants.find(session, slug)
            tenant_id = tenant.id
            decision = _decide(session, rt, validator, tenant, credentials, request, entry)
            cache = token_cache.of_session(session)
            cached = cache.lookup(session, decision.cache_key)
        if cached is not None:
            response = _respond(cached)
            _audit_success(rt, decision, entry)
            return response
        with cache.flight(decision.cache_key) as flight:
            if flight.token is not None:  # another worker's upstream call, just stored
                response = _respond(flight.token)
                _audit_success(rt, decision, entry)
                return response
            token = _obtain(rt, tenant, guard, decision)
            response = _respond(token)
            _audit_success(rt, decision, entry, (flight, token))
        return response
    except OAuthError as exc:
        if tenant_id is not None:
            _audit_failure(rt, tenant_id, entry, exc)
        raise
    except (StoreUnavailable, Conflict) as exc:
        raise TemporarilyUnavailable(exc.message) from None


def _signed(rt: Runtime, tenant: Tenant, decision: _Decision) -> UpstreamRequest:
    """The upstream request with the tenant's current signer and the integration's client
    secret: loaded and opened only when an upstream token must be obtained (a cache hit signs
    and opens nothing); the tenant's first exchange makes its key."""
    with rt.db.read() as session:
        signer = signing.signer(session, rt.keyring, tenancy.scope(session, tenant))
    if signer is None:
        try:
            with rt.db.transaction() as session:
                signing.ensure_key(session, rt.keyring, tenancy.scope(session, tenant))
        except Conflict:
            pass  # a concurrent request made it first
        with rt.db.read() as session:
            signer = signing.signer(session, rt.keyring, tenancy.scope(session, tenant))
    secret = rt.keyring.open(*decision.sealed_secret) if decision.sealed_secret else ""
    return replace(decision.request, signer=signer, client_secret=secret)


def _decide(
    session: Session,
    rt: Runtime,
    validator: TokenValidator,
    tenant: Tenant,
    credentials: ClientCredentials,
    request: ExchangeRequest,
    entry: audit.Entry,
) -> _Decision:
    client = authenticate_client(session, rt, tenant.slug, credentials)
    entry.client_id = client.client_id
    if request.grant_type != GRANT_TYPE:
        raise UnsupportedGrantType("only token exchange (RFC 8693) is supported here")
    if not request.subject_token or not request.subject_token_type:
        raise InvalidRequest("subject_token and subject_token_type are required")
    if request.requested_token_type not in (None, *REQUESTABLE_TOKEN_TYPES):
        raise InvalidRequest("unsupported requested_token_type")
    token = validate_subject_token(
        session, tenant, validator, request.subject_token, request.subject_token_type
    )
    entry.subject = token.subject
    actors: tuple[str, ...] = ()
    if request.actor_token is not None or request.actor_token_type is not None:
        actors = validate_actor(session, tenant, validator, client, token, request)
        entry.actors = list(actors)
    found = find_integration(session, client, request.audiences, request.resources, token.subject)
    integration = found.integration
    entry.integration = integration.name
    grant, scopes = authorise(client, integration, found.grant, request.scope)
    handler = handler_for(integration.kind)
    if handler is None:
        raise InvalidTarget(f"integrations of kind {integration.kind!r} are not supported")
    note = ""
    if handler.remote and not actors:
        note = _impersonation(client, integration)
    target = _target(integration)
    upstream_scopes = handler.upstream_scopes(target, scopes)
    user = resolve_user(integration, found.user)
    upstream_subject = mappings.resolve(integration, user, token.claims, found.mapped)
    sealed = integration.client_secret_sealed
    upstream_request = UpstreamRequest(
        issuer=issuer_of(rt, tenant.slug),
        target=target,
        client_id=client.client_id,
        subject=user.subject,
        upstream_subject=upstream_subject,
        upstream_scopes=upstream_scopes,
        signer=None,  # loaded on a cache miss only (_signed)
        actors=actors,
        subject_token=request.subject_token,
        subject_token_type=request.subject_token_type,
        actor_token=request.actor_token,
        actor_token_type=request.actor_token_type,
        requested_token_type=request.requested_token_type,
        client_secret="",  # opened on a miss only (_signed)
        allow_private=rt.settings.allow_private_urls,
    )
    key = CacheKey(
        tenant.id,
        client.client_id,
        user.subject,
        integration.name,
        integration.audience,
        " ".join(scopes),
        " ".join(actors),
        upstream_subject,
    )
    secret = (
        (sealed, integrations.client_secret_context(tenant, integration.name)) if sealed else None
    )
    return _Decision(tenant.id, grant.id, token, upstream_request, key, scopes, note, secret)


def _impersonation(client: Client, integration: Integration) -> str:
    """RFC 8693 §1.1: without an actor token, a token the upstream issues for the user names
    the user only, so the client becomes the user there: impersonation, which needs the
    client's ``may_impersonate`` right. (Tokens idbridge mints name the client in
    ``client_id``; delegation names it in ``act``.)"""
    if not client.may_impersonate:
        raise InvalidRequest(
            f"impersonation is not allowed for this client: integration {integration.name!r} "
            "issues tokens that name the user only; send an actor_token (delegation)"
        )
    return "impersonation"


def _obtain(
    rt: Runtime, tenant: Tenant, guard: UpstreamGuard, decision: _Decision
) -> UpstreamToken:
    """The upstream token from the integration's handler (remote ones behind the guard)."""
    handler = handler_for(decision.request.target.kind)
    assert handler is not None  # checked in _decide
    return guard.call(decision.tenant_id, handler, _signed(rt, tenant, decision))


def _respond(token: UpstreamToken) -> TokenResponse:
    return TokenResponse(
        access_token=token.access_token,
        issued_token_type=token.issued_token_type,
        token_type=token.token_type,
        expires_in=max(0, int(token.expires_at - time.time())),
        extra=token.extra,
    )


def _audit_success(
    rt: Runtime,
    decision: _Decision,
    entry: audit.Entry,
    obtained: tuple[token_cache.Flight, UpstreamToken] | None = None,
) -> None:
    """Record success in one short write transaction. After an upstream call (``obtained``)
    the token is cached in this transaction, once the grant and the session are checked again
    under the locks their revocations take (``app.token_cache.store_on``): a grant revoked or
    a session ended while the upstream answered is refused, and never leaves a token cached.
    A hit read both moments ago in ``_decide``, and revoking either purges the cached token
    in the revoking transaction."""
    try:
        with rt.db.transaction() as session:
            tenancy.scope_id(session, decision.tenant_id)
            if obtained is not None:
                flight, token = obtained
                token_cache.store_on(
                    session,
                    decision.cache_key,
                    flight,
                    token,
                    lambda: _still_valid(session, decision),
                )
            audit.record(session, decision.tenant_id, entry, audit.SUCCESS, reason=decision.note)
    except OAuthError:
        raise
    except (DomainError, SQLAlchemyError) as exc:
        raise TemporarilyUnavailable("the audit log cannot be written; nothing was issued") from exc


def _still_valid(session: Session, decision: _Decision) -> None:
    grant = session.get(Grant, decision.grant_id)
    if grant is None or grant.revoked_at is not None:
        raise UnauthorizedClient("the client has no active grant for this integration")
    if oidc.is_session_revoked(session, decision.token):
        raise InvalidRequest("subject_token refused: the session of this token has ended")


def _audit_failure(rt: Runtime, tenant_id: int, entry: audit.Entry, exc: OAuthError) -> None:
    """Record a refusal; when even that fails, the caller gets 503 instead (fail closed)."""
    try:
        with rt.db.transaction() as session:
            tenancy.scope_id(session, tenant_id)
            audit.record(session, tenant_id, entry, audit.FAILURE, exc.code, exc.message)
    except (DomainError, SQLAlchemyError) as failure:
        raise TemporarilyUnavailable("the audit log cannot be written") from failure


# --- the mapping query --------------------------------------------------------------------


def mapping(
    rt: Runtime,
    slug: str,
    credentials: ClientCredentials,
    integration_name: str,
    subject: str,
    request_id: str = "",
) -> MappingAnswer:
    """CONTRACT §3 mapping query: same client authentication and grant check as the exchange,
    then ``app.mappings.upstream_subject`` (the exchange's own code path); audited."""
    entry = audit.Entry(
        action=MAPPING_QUERY,
        request_id=request_id,
        client_id=credentials.client_id,
        subject=subject,
        integration=integration_name,
    )
    tenant_id: int | None = None
    try:
        with rt.db.read() as session:
            tenant = tenants.find(session, slug)
            tenant_id = tenant.id
            client = authenticate_client(session, rt, slug, credentials)
            if not integration_name or not subject:
                raise InvalidRequest("integration and subject are required")
            found = session.execute(
                _BY_NAME, {"value": integration_name, "client_pk": client.id}
            ).first()
            if found is None:
                raise InvalidTarget("unknown integration")
            integration, grant = found
            authorise(client, integration, grant, None)
            user = session.scalars(select(User).where(User.subject == subject)).first()
            upstream = mappings.upstream_subject(session, integration, user)
        with rt.db.transaction() as session:
            tenancy.scope_id(session, tenant_id)
            audit.record(session, tenant_id, entry, audit.SUCCESS)
        return MappingAnswer(integration_name, subject, upstream)
    except OAuthError as exc:
        if tenant_id is not None:
            _audit_failure(rt, tenant_id, entry, exc)
        raise
    except (StoreUnavailable, Conflict, SQLAlchemyError) as exc:
        raise TemporarilyUnavailable("the store cannot answer now") from exc
