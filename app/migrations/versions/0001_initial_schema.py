"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 01:58:12.587236
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=False),
        sa.Column("user_id_attribute", sa.String(length=200), nullable=False),
        sa.Column("customer_attribute", sa.String(length=300), nullable=False),
        sa.Column("customer_required", sa.Boolean(), nullable=False),
        sa.Column("customer_claim", sa.String(length=100), nullable=False),
        sa.Column("mail_from", sa.String(length=320), nullable=False),
        sa.Column("password_reset_url", sa.String(length=2000), nullable=False),
        sa.Column("logout_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenants")),
        sa.UniqueConstraint("slug", name=op.f("uq_tenants_slug")),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=True),
        sa.Column("secret_source", sa.String(length=200), nullable=False),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("audiences", sa.JSON(), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("may_impersonate", sa.Boolean(), nullable=False),
        sa.Column("may_delegate", sa.Boolean(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_clients_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("tenant_id", "client_id", name=op.f("uq_clients_tenant_id_client_id")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_clients_tenant_id_id")),
    )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clients_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "identity_providers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=2000), nullable=False),
        sa.Column("jwks_uri", sa.String(length=2000), nullable=False),
        sa.Column("audiences", sa.JSON(), nullable=False),
        sa.Column("algorithms", sa.JSON(), nullable=False),
        sa.Column("subject_claim", sa.String(length=100), nullable=False),
        sa.Column("connector", sa.String(length=20), nullable=False),
        sa.Column("connector_settings", sa.JSON(), nullable=False),
        sa.Column("connector_secret_sealed", sa.Text(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_identity_providers_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_providers")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_identity_providers_tenant_id")),
    )
    with op.batch_alter_table("identity_providers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_identity_providers_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "integrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("flow", sa.String(length=20), nullable=True),
        sa.Column("audience", sa.String(length=2000), nullable=False),
        sa.Column("resource", sa.String(length=2000), nullable=False),
        sa.Column("token_endpoint", sa.String(length=2000), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("client_secret_sealed", sa.Text(), nullable=True),
        sa.Column("client_secret_source", sa.String(length=200), nullable=False),
        sa.Column("user_mapping", sa.JSON(), nullable=False),
        sa.Column("scope_mapping", sa.JSON(), nullable=False),
        sa.Column("token_lifetime", sa.Integer(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_integrations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_integrations")),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_integrations_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_integrations_tenant_id_name")),
    )
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_integrations_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "scim_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_scim_tokens_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_tokens")),
        sa.UniqueConstraint("public_id", name=op.f("uq_scim_tokens_public_id")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_scim_tokens_token_hash")),
    )
    with op.batch_alter_table("scim_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scim_tokens_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "webhook_secrets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("secret_sealed", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_webhook_secrets_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_secrets")),
        sa.UniqueConstraint("public_id", name=op.f("uq_webhook_secrets_public_id")),
        sa.UniqueConstraint(
            "tenant_id", "fingerprint", name=op.f("uq_webhook_secrets_tenant_id_fingerprint")
        ),
    )
    with op.batch_alter_table("webhook_secrets", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_secrets_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "grants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_pk", sa.Integer(), nullable=False),
        sa.Column("integration_pk", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "client_pk"],
            ["clients.tenant_id", "clients.id"],
            name=op.f("fk_grants_tenant_id_client_pk_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "integration_pk"],
            ["integrations.tenant_id", "integrations.id"],
            name=op.f("fk_grants_tenant_id_integration_pk_integrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_grants_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint(
            "tenant_id",
            "client_pk",
            "integration_pk",
            name=op.f("uq_grants_tenant_id_client_pk_integration_pk"),
        ),
    )
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_grants_client_pk"), ["client_pk"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_grants_integration_pk"), ["integration_pk"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_grants_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("grants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_grants_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_grants_integration_pk"))
        batch_op.drop_index(batch_op.f("ix_grants_client_pk"))

    op.drop_table("grants")
    with op.batch_alter_table("webhook_secrets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_secrets_tenant_id"))

    op.drop_table("webhook_secrets")
    with op.batch_alter_table("scim_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scim_tokens_tenant_id"))

    op.drop_table("scim_tokens")
    with op.batch_alter_table("integrations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_integrations_tenant_id"))

    op.drop_table("integrations")
    with op.batch_alter_table("identity_providers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identity_providers_tenant_id"))

    op.drop_table("identity_providers")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_clients_tenant_id"))

    op.drop_table("clients")
    op.drop_table("tenants")
