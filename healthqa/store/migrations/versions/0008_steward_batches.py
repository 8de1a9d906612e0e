"""steward batches: a score band accepted through a reviewed sample, or accepted by the system above a threshold

``steward_batches`` holds one bulk decision: the band (``low``–``high``), the pairs it held when the
steward began (``pairs``), the random sample they reviewed (``sample``), its outcome (``status``:
sampling | accepted | rejected), and for the system's own (``kind`` auto) the threshold. Each merge it
made names it in ``steward_decisions.batch_id``, so the batch is undone as one.

Revision ID: 0008_batches
Revises: 0007_guards_sessions
Create Date: 2026-12-07 15:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0008_batches'
down_revision = '0007_guards_sessions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'steward_batches',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('source', sa.String(255), nullable=False),
        sa.Column('kind', sa.String(8), nullable=False),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=True),
        sa.Column('low', sa.Float(), nullable=False),
        sa.Column('high', sa.Float(), nullable=False),
        sa.Column('threshold', sa.Float(), nullable=True),
        sa.Column('pairs', sa.JSON(), nullable=True),
        sa.Column('sample', sa.JSON(), nullable=True),
        sa.Column('status', sa.String(16), nullable=False),
        sa.Column('error', sa.JSON(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('undone_at', sa.DateTime(), nullable=True),
    )
    with op.batch_alter_table('steward_decisions') as b:
        b.add_column(sa.Column('batch_id', sa.Integer(), nullable=True))
        b.create_index('ix_steward_batch', ['batch_id'])


def downgrade() -> None:
    with op.batch_alter_table('steward_decisions') as b:
        b.drop_index('ix_steward_batch')
        b.drop_column('batch_id')
    op.drop_table('steward_batches')
