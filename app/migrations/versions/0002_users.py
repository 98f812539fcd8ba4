"""users and session revocations

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 02:36:26.003900
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "session_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("not_before", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.String(length=50), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_session_revocations_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_revocations")),
        sa.UniqueConstraint(
            "tenant_id",
            "subject",
            "session_id",
            name=op.f("uq_session_revocations_tenant_id_subject_session_id"),
        ),
    )
    with op.batch_alter_table("session_revocations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_session_revocations_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scim_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("user_name_canonical", sa.String(length=255), nullable=False),
        sa.Column("customer", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_canonical", sa.String(length=320), nullable=True),
        sa.Column("email_verified", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("operator_blocked", sa.Boolean(), nullable=False),
        sa.Column("logins_count", sa.BigInteger(), nullable=False),
        sa.Column("login_time", sa.DateTime(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("scim", sa.JSON(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_users_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("tenant_id", "customer", name=op.f("uq_users_tenant_id_customer")),
        sa.UniqueConstraint(
            "tenant_id", "email_canonical", name=op.f("uq_users_tenant_id_email_canonical")
        ),
        sa.UniqueConstraint("tenant_id", "id", name=op.f("uq_users_tenant_id_id")),
        sa.UniqueConstraint("tenant_id", "scim_id", name=op.f("uq_users_tenant_id_scim_id")),
        sa.UniqueConstraint("tenant_id", "subject", name=op.f("uq_users_tenant_id_subject")),
        sa.UniqueConstraint(
            "tenant_id", "user_name_canonical", name=op.f("uq_users_tenant_id_user_name_canonical")
        ),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_users_tenant_id_external_id", ["tenant_id", "external_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index("ix_users_tenant_id_external_id")
        batch_op.drop_index(batch_op.f("ix_users_tenant_id"))

    op.drop_table("users")
    with op.batch_alter_table("session_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_session_revocations_tenant_id"))

    op.drop_table("session_revocations")
