"""api tokens: machines' keys to the match API (POST /fhir/Patient/$match, /api/match)

``api_tokens`` keeps a token's name, role, the SHA-256 of the token (never the token), when it was
made and when it was revoked.

Revision ID: 0010_api_tokens
Revises: 0009_watched_keys
Create Date: 2026-12-07 16:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0010_api_tokens'
down_revision = '0009_watched_keys'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column('name', sa.String(64), nullable=False, unique=True),
        sa.Column('role', sa.String(16), nullable=False),
        sa.Column('token_hash', sa.String(64), nullable=False, unique=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('revoked_at', sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('api_tokens')
