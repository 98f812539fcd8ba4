"""webhook fingerprint: a webhook id names one message (operation and exact body)

Rows written before this revision have no fingerprint (NULL): for the 24 hours they are
remembered, a reuse of such an id is compared by operation only (another operation is refused
with 409, the same one gets the first response); the body of a delivery made before the
upgrade cannot be compared, and was never stored. New rows always carry one.

Revision ID: 0008_webhook_fingerprint
Revises: 0007_job_leases
Create Date: 2026-12-01 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_webhook_fingerprint"
down_revision = "0007_job_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_column("fingerprint")
