"""console jobs and log-in windows: what the console's workers must share

``console_jobs`` holds the engineer's ad-hoc validations (scope, progress, result), which were in the
memory of the process that started them: with ``healthqa serve --workers N`` the job's page polled
another process and found nothing. ``login_windows`` counts a client address's log-in attempts in
its minute, which each process counted on its own (N workers allowed N times the attempts).

Revision ID: 0012_jobs_login_windows
Revises: 0011_institution_names
Create Date: 2026-12-08 00:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0012_jobs_login_windows'
down_revision = '0011_institution_names'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_windows',
        sa.Column('client', sa.String(64), primary_key=True),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
    )
    op.create_table(
        'console_jobs',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('user_name', sa.String(64), nullable=False),
        sa.Column('scope', sa.JSON(), nullable=False),
        sa.Column('state', sa.String(16), nullable=False),
        sa.Column('owner', sa.String(32), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('done_tables', sa.JSON(), nullable=True),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('result', sa.JSON(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
    )
    op.create_index('ix_console_jobs_state', 'console_jobs', ['state'])


def downgrade() -> None:
    op.drop_index('ix_console_jobs_state', table_name='console_jobs')
    op.drop_table('console_jobs')
    op.drop_table('login_windows')
