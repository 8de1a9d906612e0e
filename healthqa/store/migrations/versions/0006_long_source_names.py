"""long source names: a source's name up to 255 characters in every column that holds it

A source is named by its configuration key, which may be long and Chinese (一个区县的
"某某区卫生健康信息平台-居民电子健康档案库-…"). The 64-character columns refused such a name on
PostgreSQL (``value too long for type character varying(64)``) the first time a result was stored;
SQLite ignores declared lengths, so only servers broke. The columns that hold a source's name widen
to 255 characters; the finding fingerprint (``rule:<source>.<table>:<rule>:<institution>``) to 512,
and a score's subject (``<source>.<table>``) to 512. Config refuses a longer name (config.py
``SOURCE_NAME_MAX``).

Revision ID: 0006_long_names
Revises: 0005_assessment
Create Date: 2026-12-07 11:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0006_long_names'
down_revision = '0005_assessment'
branch_labels = None
depends_on = None

# table -> the columns widened, with their length before and after
WIDENED = {
    'rule_results': {'source': (64, 255)},
    'findings': {'source': (64, 255), 'fingerprint': (256, 512)},
    'scores': {'subject': (128, 512)},
    'watermarks': {'source': (64, 255)},
    'dedup_pairs': {'source': (64, 255)},
    'dedup_clusters': {'source': (64, 255)},
    'steward_decisions': {'source': (64, 255)},
    'archive_orgs': {'source': (64, 255)},
    'counted_keys': {'source': (64, 255)},
}


def _alter(wider: bool) -> None:
    for table, columns in WIDENED.items():
        # batch: SQLite alters a column's type only by copying the table (indexes and keys kept)
        with op.batch_alter_table(table) as b:
            for column, (before, after) in columns.items():
                b.alter_column(column, existing_type=sa.String(before if wider else after),
                               type_=sa.String(after if wider else before), existing_nullable=False)


def upgrade() -> None:
    _alter(True)


def downgrade() -> None:
    _alter(False)
