"""job leases: scheduled jobs run once across instances

Revision ID: 0007_job_leases
Revises: 0006
Create Date: 2026-11-24 04:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_job_leases"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )


def downgrade() -> None:
    op.drop_table("job_leases")
