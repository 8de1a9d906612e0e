"""scores and findings for reports

The 0001 ``scores`` and ``findings`` tables were never written (nothing produced scores or findings
before reports/), so they are replaced whole rather than altered column by column.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 22:13:02
"""

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table('scores')
    op.drop_table('findings')
    op.create_table(
        'scores',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('level', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=128), nullable=False),
        sa.Column('pass_rate', sa.Float(), nullable=True),
        sa.Column('conformance', sa.Float(), nullable=True),
        sa.Column('low', sa.Float(), nullable=True),
        sa.Column('high', sa.Float(), nullable=True),
        sa.Column('checks', sa.Integer(), nullable=False),
        sa.Column('passed', sa.Integer(), nullable=False),
        sa.Column('errors', sa.Integer(), nullable=False),
        sa.Column('not_applicable', sa.Integer(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('violations', sa.Integer(), nullable=False),
        sa.Column('sampled', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_scores_run_id', 'scores', ['run_id'])
    op.create_index('ix_scores_subject', 'scores', ['level', 'subject'])
    op.create_table(
        'findings',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('fingerprint', sa.String(length=256), nullable=False),
        sa.Column('kind', sa.String(length=8), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('subject', sa.String(length=64), nullable=False),
        sa.Column('table_name', sa.String(length=64), nullable=True),
        sa.Column('org_code', sa.String(length=64), nullable=True),
        sa.Column('system', sa.String(length=8), nullable=True),
        sa.Column('level', sa.String(length=8), nullable=False),
        sa.Column('title_zh', sa.Text(), nullable=False),
        sa.Column('title_en', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('violations', sa.Integer(), nullable=False),
        sa.Column('rows_checked', sa.Integer(), nullable=False),
        sa.Column('threshold_pct', sa.Float(), nullable=True),
        sa.Column('examples', sa.JSON(), nullable=True),
        sa.Column('first_run_id', sa.Integer(), nullable=False),
        sa.Column('last_run_id', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('last_seen_at', sa.DateTime(), nullable=False),
        sa.Column('response_due_at', sa.DateTime(), nullable=True),
        sa.Column('fix_due_at', sa.DateTime(), nullable=True),
        sa.Column('acknowledged_at', sa.DateTime(), nullable=True),
        sa.Column('acknowledged_by', sa.String(length=64), nullable=True),
        sa.Column('assignee', sa.String(length=64), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.Column('reopened_count', sa.Integer(), nullable=False),
        sa.Column('notes', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['first_run_id'], ['runs.id']),
        sa.ForeignKeyConstraint(['last_run_id'], ['runs.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('fingerprint'),
    )
    op.create_index('ix_findings_org_code', 'findings', ['org_code'])
    op.create_index('ix_findings_state_level', 'findings', ['state', 'level'])
    op.create_table(
        'finding_events',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('finding_id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('event', sa.String(length=16), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=True),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(['finding_id'], ['findings.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_finding_events_finding_id', 'finding_events', ['finding_id'])
    op.create_index('ix_finding_events_run_id', 'finding_events', ['run_id'])
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=32), nullable=True))
    with op.batch_alter_table('rule_results', schema=None) as batch_op:
        batch_op.add_column(sa.Column('system', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('examples', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rule_results', schema=None) as batch_op:
        batch_op.drop_column('examples')
        batch_op.drop_column('system')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_column('owner')
    op.drop_table('finding_events')
    op.drop_table('findings')
    op.drop_table('scores')
    op.create_table(
        'scores',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('level', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=128), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('rules', sa.Integer(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_scores_run_id', 'scores', ['run_id'])
    op.create_table(
        'findings',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('fingerprint', sa.String(length=128), nullable=False),
        sa.Column('rule_id', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('table_name', sa.String(length=64), nullable=True),
        sa.Column('org_code', sa.String(length=64), nullable=True),
        sa.Column('system', sa.String(length=64), nullable=True),
        sa.Column('severity', sa.String(length=8), nullable=False),
        sa.Column('title', sa.Text(), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('first_run_id', sa.Integer(), nullable=False),
        sa.Column('last_run_id', sa.Integer(), nullable=False),
        sa.Column('opened_at', sa.DateTime(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=True),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['first_run_id'], ['runs.id']),
        sa.ForeignKeyConstraint(['last_run_id'], ['runs.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('fingerprint'),
    )
