"""token cache: upstream tokens shared by every worker and instance, sealed, in the store

Revision ID: 0008_token_cache
Revises: 0008_webhook_fingerprint
Create Date: 2026-12-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_token_cache"
down_revision = "0008_webhook_fingerprint"  # re-chained after main's 0008
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "token_cache",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("user_hash", sa.String(length=64), nullable=False),
        sa.Column("grant_hash", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Text(), nullable=True),
        sa.Column("good_until", sa.Float(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=False),
        sa.Column("lease_until", sa.Float(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_token_cache_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_cache")),
        sa.UniqueConstraint(
            "tenant_id", "key_hash", name=op.f("uq_token_cache_tenant_id_key_hash")
        ),
    )
    op.create_index(op.f("ix_token_cache_tenant_id"), "token_cache", ["tenant_id"])
    op.create_index(op.f("ix_token_cache_good_until"), "token_cache", ["good_until"])
    op.create_index("ix_token_cache_tenant_id_user_hash", "token_cache", ["tenant_id", "user_hash"])
    op.create_index(
        "ix_token_cache_tenant_id_grant_hash", "token_cache", ["tenant_id", "grant_hash"]
    )
    op.create_index(
        "ix_token_cache_tenant_id_token_hash", "token_cache", ["tenant_id", "token_hash"]
    )


def downgrade() -> None:
    op.drop_table("token_cache")
