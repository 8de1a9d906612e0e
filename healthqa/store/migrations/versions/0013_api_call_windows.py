"""API call windows: the match API's calls per token counted in the store

``api_call_windows`` counts a machine token's calls of ``$match`` / ``/api/match`` in its minute,
which each console process counted on its own (N workers allowed a token N times the calls), as
``login_windows`` (0012) does for log-in attempts.

Revision ID: 0013_api_call_windows
Revises: 0012_jobs_login_windows
Create Date: 2026-12-08 03:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0013_api_call_windows'
down_revision = '0012_jobs_login_windows'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_call_windows',
        sa.Column('token', sa.String(64), primary_key=True),
        sa.Column('started_at', sa.DateTime(), nullable=False),
        sa.Column('calls', sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('api_call_windows')
