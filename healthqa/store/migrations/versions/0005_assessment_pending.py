"""atomic nights: a nightly run whose assessment could not be stored keeps what it needs to be assessed again

``runs.assessment_pending`` (JSON, NULL when nothing is pending) holds the watermarks the run staged
and the faults it saw, when its scores and findings could not be written (the audit store full, its
connection dropped). The next nightly run, or ``healthqa report --run N``, assesses the run from its
stored rule results and then advances those watermarks in the same transaction.

Revision ID: 0005_assessment
Revises: 0004_late
Create Date: 2026-12-07 11:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0005_assessment'
down_revision = '0004_late'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('runs') as b:
        b.add_column(sa.Column('assessment_pending', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('runs') as b:
        b.drop_column('assessment_pending')
