"""console review: who decided and which archive survives, one decision in force per pair, queue indexes

``steward_decisions`` gains the surviving archive a steward chose (``survivor_id``). At most one
merge / not-the-same-person decision is in force per pair (a partial unique index): a second steward
deciding the same pair at the same moment is refused by the database, not silently stacked (no lost
update). Decisions already stacked on one pair are first marked undone, all but the newest — which
is the one ``store.dedup.active_decisions`` has always treated as in force. The review queue reads
suggested pairs by score (``ix_dedup_pairs_queue``) and filters by the archives' institution
(``archive_orgs``, filled by the console from the MPI).

Revision ID: 0003_console
Revises: 0002
Create Date: 2026-11-26 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = '0003_console'
down_revision = '0002'
branch_labels = None
depends_on = None

IN_FORCE = "undone_at IS NULL AND decision <> 'skip'"


def upgrade() -> None:
    with op.batch_alter_table('steward_decisions') as b:
        b.add_column(sa.Column('survivor_id', sa.String(length=64), nullable=True))
    op.execute(f"""
        UPDATE steward_decisions SET undone_at = (
            SELECT min(n.decided_at) FROM steward_decisions n
            WHERE n.source = steward_decisions.source AND n.left_id = steward_decisions.left_id
              AND n.right_id = steward_decisions.right_id AND n.id > steward_decisions.id
              AND n.undone_at IS NULL AND n.decision <> 'skip')
        WHERE {IN_FORCE} AND EXISTS (
            SELECT 1 FROM steward_decisions n
            WHERE n.source = steward_decisions.source AND n.left_id = steward_decisions.left_id
              AND n.right_id = steward_decisions.right_id AND n.id > steward_decisions.id
              AND n.undone_at IS NULL AND n.decision <> 'skip')""")
    op.create_index('uq_steward_in_force', 'steward_decisions', ['source', 'left_id', 'right_id'], unique=True,
                    sqlite_where=sa.text(IN_FORCE), postgresql_where=sa.text(IN_FORCE))
    op.create_index('ix_steward_user', 'steward_decisions', ['user_id', 'decided_at'])
    op.create_index('ix_dedup_pairs_queue', 'dedup_pairs', ['source', 'score'])
    op.create_table(
        'archive_orgs',
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.Column('archive_id', sa.String(length=64), nullable=False),
        sa.Column('org_code', sa.String(length=64), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('source', 'archive_id', 'org_code'),
    )
    op.create_index('ix_archive_orgs_org', 'archive_orgs', ['source', 'org_code'])
    op.create_index('ix_audit_log_subject', 'audit_log', ['action', 'subject', 'at'])


def downgrade() -> None:
    op.drop_index('ix_audit_log_subject', table_name='audit_log')
    op.drop_index('ix_archive_orgs_org', table_name='archive_orgs')
    op.drop_table('archive_orgs')
    op.drop_index('ix_dedup_pairs_queue', table_name='dedup_pairs')
    op.drop_index('ix_steward_user', table_name='steward_decisions')
    op.drop_index('uq_steward_in_force', table_name='steward_decisions')
    with op.batch_alter_table('steward_decisions') as b:
        b.drop_column('survivor_id')
