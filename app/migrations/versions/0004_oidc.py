"""user sessions (login counting) and back-channel logout token uses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 02:50:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("session_key", sa.String(length=300), nullable=False),
        sa.Column("session_id", sa.String(length=255), nullable=False),
        sa.Column("session_time", sa.DateTime(), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_user_sessions_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint(
            "tenant_id",
            "subject",
            "session_key",
            name=op.f("uq_user_sessions_tenant_id_subject_session_key"),
        ),
    )
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_sessions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_user_sessions_tenant_id_session_id", ["tenant_id", "session_id"], unique=False
        )

    op.create_table(
        "logout_token_uses",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_logout_token_uses_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logout_token_uses")),
        sa.UniqueConstraint("tenant_id", "jti", name=op.f("uq_logout_token_uses_tenant_id_jti")),
    )
    with op.batch_alter_table("logout_token_uses", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_logout_token_uses_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_logout_token_uses_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("logout_token_uses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_logout_token_uses_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_logout_token_uses_expires_at"))

    op.drop_table("logout_token_uses")
    with op.batch_alter_table("user_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_user_sessions_tenant_id_session_id")
        batch_op.drop_index(batch_op.f("ix_user_sessions_tenant_id"))

    op.drop_table("user_sessions")
