"""The resources idbridge serves over SCIM: core User with the enterprise and idbridge
extensions, and Group; the ServiceProviderConfig advertises exactly what is enforced."""

from __future__ import annotations

from typing import Annotated, Any, Generic

from pydantic import field_validator
from scim2_models import (
    URN,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    ComplexAttribute,
    Email,
    EnterpriseUser,
    ETag,
    Extension,
    Filter,
    Group,
    Patch,
    ResourceType,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    User,
)
from scim2_models.resources.resource import AnyExtension
from scim2_models.resources.service_provider_config import Pagination

from app.provisioning import IDBRIDGE_USER_SCHEMA

MAX_OPERATIONS = 100
MAX_PAYLOAD_SIZE = 1024 * 1024
MAX_RESULTS = 200
DEFAULT_PAGE_SIZE = 100


class UpstreamIdentity(ComplexAttribute):
    """The user's identity in one upstream system (feeds the token-exchange mappings)."""

    integration: Annotated[str | None, CaseExact.true] = None
    """The integration's name in idbridge."""

    subject: Annotated[str | None, CaseExact.true] = None
    """The user's subject in that upstream system."""


class IdbridgeUser(Extension):
    """``urn:ietf:params:scim:schemas:extension:idbridge:2.0:User``: what CONTRACT §1 needs
    beyond the core schema."""

    __schema__ = URN(IDBRIDGE_USER_SCHEMA)

    customer: Annotated[str | None, CaseExact.true] = None
    """The customer the user belongs to (the tenant's default customer attribute)."""

    upstream_identities: list[UpstreamIdentity] | None = None
    """The user's identities in upstream systems: integration name and upstream subject."""


class LenientEmail(Email):
    """An email kept exactly as the identity provider sent it.

    scim2-models types ``emails.value`` as pydantic's ``EmailStr``, which lowercases the
    domain and refuses special-use domains (``.local``, ``.internal``) that directories really
    hold; idbridge only needs one ``@`` with text on both sides, and mails the address as
    stored (CONTRACT §1).
    """

    value: str | None = None

    @field_validator("value")
    @classmethod
    def _one_at_sign(cls, value: str | None) -> str | None:
        if value is not None:
            local, at, domain = value.strip().rpartition("@")
            if not (local and at and domain) or any(c.isspace() for c in value.strip()):
                raise ValueError(f"{value!r} is not an email address")
            return value.strip()
        return value


class ScimUser(User[AnyExtension], Generic[AnyExtension]):
    """The core User (RFC 7643 §4.1) with lenient email addresses."""

    emails: list[LenientEmail] | None = None  # type: ignore[assignment]


UserResource = ScimUser[EnterpriseUser | IdbridgeUser]

TOLERANT = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
"""What identity providers really send (Entra ID member removal by value, filtered paths on
an empty list, unknown schemas such as Entra's ADSCIM group extension) is accepted."""


def config() -> ServiceProviderConfig:
    """RFC 7643 §5: exactly what the service enforces."""
    return ServiceProviderConfig(
        documentation_uri="https://github.com/idbridge/idbridge#scim-20-provisioning",
        patch=Patch(supported=True),
        bulk=Bulk(supported=True, max_operations=MAX_OPERATIONS, max_payload_size=MAX_PAYLOAD_SIZE),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        pagination=Pagination(
            index=True,
            cursor=False,
            default_page_size=DEFAULT_PAGE_SIZE,
            max_page_size=MAX_RESULTS,
        ),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer token",
                description="A SCIM token of the tenant (Authorization: Bearer ...)",
                primary=True,
            )
        ],
    )


def provider() -> ScimProvider:
    resource_types: list[Any] = [
        ResourceType.from_resource(UserResource),
        ResourceType.from_resource(Group),
    ]
    return ScimProvider(
        models=[ScimUser, EnterpriseUser, IdbridgeUser, Group],
        resource_types=resource_types,
        config=config(),
        policy=TOLERANT,
    )
