"""review counts: the closed pairs of the queue's score bands, kept on each decision

The queue page counted the pairs closed for a steward by reading every closed pair's id on every
page (linear in the decisions: ~32 ms of PostgreSQL at 1,800 of them). ``review_counts`` holds the
count per band group, changed in the decision's own transaction; ``review_count_keys`` names each
grouping and the pairs' version it was recounted for (a store upgraded from 0012 is recounted when
the console first asks).

Revision ID: 0014_review_counts
Revises: 0013_api_call_windows
Create Date: 2026-12-08 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0014_review_counts'
down_revision = '0013_api_call_windows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'review_count_keys',
        sa.Column('source', sa.String(255), primary_key=True),
        sa.Column('grouping', sa.String(64), primary_key=True),
        sa.Column('definition', sa.JSON(), nullable=False),
        sa.Column('version', sa.Text(), nullable=False),
        sa.Column('counted_at', sa.DateTime(), nullable=False),
    )
    op.create_table(
        'review_counts',
        sa.Column('source', sa.String(255), primary_key=True),
        sa.Column('grouping', sa.String(64), primary_key=True),
        sa.Column('scope', sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column('grp', sa.Text(), primary_key=True),
        sa.Column('n', sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('review_counts')
    op.drop_table('review_count_keys')
