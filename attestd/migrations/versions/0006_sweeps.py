"""storage sweeps: runs, swept objects, continuous cursors

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sweep_runs',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('mode', sa.String(length=16), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('dry_run', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('cursor', sa.Text(), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('summary', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('sweep_runs', schema=None) as batch_op:
        batch_op.create_index('ix_sweep_runs_source', ['source', 'mode', 'status'], unique=False)
    op.create_table(
        'sweep_objects',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('key', sa.Text(), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=True),
        sa.Column('etag', sa.Text(), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=True),
        sa.Column('run_id', sa.BigInteger(), nullable=False),
        sa.Column('decision', sa.String(length=16), nullable=True),
        sa.Column('label', sa.String(length=32), nullable=True),
        sa.Column('decided_by', sa.Text(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('downloaded', sa.Boolean(), nullable=False),
        sa.Column('action', sa.String(length=16), nullable=False),
        sa.Column('action_state', sa.String(length=16), nullable=False),
        sa.Column('action_detail', sa.Text(), nullable=True),
        sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('source', 'key', name='uq_sweep_objects_source_key'),
    )
    with op.batch_alter_table('sweep_objects', schema=None) as batch_op:
        batch_op.create_index('ix_sweep_objects_run', ['run_id', 'action_state'], unique=False)
        batch_op.create_index('ix_sweep_objects_sha256', ['sha256'], unique=False)
    op.create_table(
        'sweep_cursors',
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('value', sa.Text(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('source'),
    )


def downgrade() -> None:
    op.drop_table('sweep_cursors')
    with op.batch_alter_table('sweep_objects', schema=None) as batch_op:
        batch_op.drop_index('ix_sweep_objects_sha256')
        batch_op.drop_index('ix_sweep_objects_run')
    op.drop_table('sweep_objects')
    with op.batch_alter_table('sweep_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_sweep_runs_source')
    op.drop_table('sweep_runs')
