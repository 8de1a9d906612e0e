"""institution names: the register of institutions as the last read of it found it

Reports, the findings listing and the console name institutions from ``institution_names`` instead
of reading the source that maps ``organization`` each time (a source down must not hold them up).

Revision ID: 0011_institution_names
Revises: 0010_api_tokens
Create Date: 2026-12-07 18:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0011_institution_names'
down_revision = '0010_api_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'institution_names',
        sa.Column('org_code', sa.String(64), primary_key=True),
        sa.Column('name', sa.String(256), nullable=False),
        sa.Column('read_at', sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('institution_names')
