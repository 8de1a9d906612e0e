"""watched keys: a rule result keeps every violating key among the keys its run watched

``rule_results.watched_keys`` (JSON, nullable): the demo's night watches its valid records of every
kind (truth/valid_kinds.csv), so that its truth check states their false flags exactly rather than
as a lower bound from the 50 kept sample keys. Record keys only, as ``sample_keys``; NULL for every
run that watched nothing (every real site's).

Revision ID: 0009_watched_keys
Revises: 0008_batches
Create Date: 2026-12-07 16:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0009_watched_keys'
down_revision = '0008_batches'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('rule_results', sa.Column('watched_keys', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rule_results') as t:
        t.drop_column('watched_keys')
