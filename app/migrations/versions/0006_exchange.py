"""token exchange: signing keys, upstream mappings, audit events

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 03:00:58.683511
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_token_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_issued_token_revocations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issued_token_revocations")),
        sa.UniqueConstraint(
            "tenant_id", "jti", name=op.f("uq_issued_token_revocations_tenant_id_jti")
        ),
    )
    op.create_index(
        op.f("ix_issued_token_revocations_expires_at"),
        "issued_token_revocations",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_issued_token_revocations_tenant_id"),
        "issued_token_revocations",
        ["tenant_id"],
        unique=False,
    )
    op.create_table(
        "client_assertion_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_client_assertion_uses_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_client_assertion_uses")),
        sa.UniqueConstraint(
            "tenant_id",
            "client_id",
            "jti",
            name=op.f("uq_client_assertion_uses_tenant_id_client_id_jti"),
        ),
    )
    op.create_index(
        op.f("ix_client_assertion_uses_expires_at"),
        "client_assertion_uses",
        ["expires_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_client_assertion_uses_tenant_id"),
        "client_assertion_uses",
        ["tenant_id"],
        unique=False,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("actors", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("integration", sa.String(length=100), nullable=False),
        sa.Column("audience", sa.String(length=2000), nullable=False),
        sa.Column("scope", sa.String(length=2000), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("error_code", sa.String(length=50), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_audit_events_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
    )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_events_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_audit_events_tenant_id_at", ["tenant_id", "at"], unique=False)

    op.create_table(
        "signing_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("algorithm", sa.String(length=10), nullable=False),
        sa.Column("private_sealed", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("activates_at", sa.DateTime(), nullable=False),
        sa.Column("retires_at", sa.DateTime(), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_signing_keys_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_keys")),
        sa.UniqueConstraint("tenant_id", "kid", name=op.f("uq_signing_keys_tenant_id_kid")),
    )
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_signing_keys_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "upstream_mappings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("integration_pk", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("upstream_subject", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id", "integration_pk"],
            ["integrations.tenant_id", "integrations.id"],
            name=op.f("fk_upstream_mappings_tenant_id_integration_pk_integrations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_upstream_mappings_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upstream_mappings")),
        sa.UniqueConstraint(
            "tenant_id",
            "integration_pk",
            "subject",
            name=op.f("uq_upstream_mappings_tenant_id_integration_pk_subject"),
        ),
    )
    with op.batch_alter_table("upstream_mappings", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upstream_mappings_integration_pk"), ["integration_pk"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_upstream_mappings_tenant_id"), ["tenant_id"], unique=False
        )

    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_index(
        op.f("ix_issued_token_revocations_tenant_id"), table_name="issued_token_revocations"
    )
    op.drop_index(
        op.f("ix_issued_token_revocations_expires_at"), table_name="issued_token_revocations"
    )
    op.drop_table("issued_token_revocations")
    op.drop_index(op.f("ix_client_assertion_uses_tenant_id"), table_name="client_assertion_uses")
    op.drop_index(op.f("ix_client_assertion_uses_expires_at"), table_name="client_assertion_uses")
    op.drop_table("client_assertion_uses")
    with op.batch_alter_table("upstream_mappings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upstream_mappings_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_upstream_mappings_integration_pk"))

    op.drop_table("upstream_mappings")
    with op.batch_alter_table("signing_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_keys_tenant_id"))

    op.drop_table("signing_keys")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_tenant_id_at")
        batch_op.drop_index(batch_op.f("ix_audit_events_tenant_id"))

    op.drop_table("audit_events")
    # ### end Alembic commands ###
