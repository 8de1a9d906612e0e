"""login guards and console sessions: log-in attempts counted atomically, sessions ended server-side

``login_guards`` counts a name's log-in attempts before the password is checked, in one transaction
holding the row: 18 guesses sent at once no longer all get checked under a lock-out of 5.
``console_sessions`` lets the server end a session (log-out, a new password, a disabled account, a
changed role): before, a copied cookie kept working until it expired.

Revision ID: 0007_guards_sessions
Revises: 0006_long_names
Create Date: 2026-12-07 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0007_guards_sessions'
down_revision = '0006_long_names'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'login_guards',
        sa.Column('subject', sa.String(64), primary_key=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_at', sa.DateTime(), nullable=True),
        sa.Column('locked_until', sa.DateTime(), nullable=True),
    )
    op.create_table(
        'console_sessions',
        sa.Column('id', sa.String(64), primary_key=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id'), nullable=False),
        sa.Column('began_at', sa.DateTime(), nullable=False),
        sa.Column('ended_at', sa.DateTime(), nullable=True),
    )
    op.create_index('ix_console_sessions_user_id', 'console_sessions', ['user_id'])


def downgrade() -> None:
    op.drop_index('ix_console_sessions_user_id', table_name='console_sessions')
    op.drop_table('console_sessions')
    op.drop_table('login_guards')
