"""late arrivals: the keys a night counted that the next night's overlap re-read fetches again

An incremental night re-reads ``overlap_hours`` before its watermark to take late arrivals; the rows
of that overlap (and the rows whose time is no time at all) that a night already counted are kept
here by key, so that the next night counts only the rows it had not read before.

Revision ID: 0004_late
Revises: 0003_console
Create Date: 2026-12-07 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0004_late'
down_revision = '0003_console'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'counted_keys',
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('table_name', sa.String(length=64), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id']),
        sa.PrimaryKeyConstraint('source', 'table_name', 'key'),
    )


def downgrade() -> None:
    op.drop_table('counted_keys')
