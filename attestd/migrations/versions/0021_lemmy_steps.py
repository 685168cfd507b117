"""Lemmy follow-up steps: what a hit asks of Lemmy, done once, retried until done

Revision ID: 0021
Revises: 0019
Create Date: 2026-12-02 01:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0021'
down_revision = '0019'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'lemmy_steps',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  primary_key=True, autoincrement=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('step', sa.String(length=16), nullable=False),
        sa.Column('target', sa.String(length=64), nullable=False),
        sa.Column('evidence', sa.String(length=16), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_try', sa.DateTime(timezone=True), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('sha256', 'step', 'target', name='uq_lemmy_steps_target'),
    )
    op.create_index('ix_lemmy_steps_due', 'lemmy_steps', ['state', 'next_try'])


def downgrade() -> None:
    op.drop_index('ix_lemmy_steps_due', table_name='lemmy_steps')
    op.drop_table('lemmy_steps')
