"""who sent an unreadable upload kept for review, and how many bytes its copy holds

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-01 22:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('caller', sa.String(length=100), nullable=True))
        batch.add_column(sa.Column('copy_bytes', sa.BigInteger(), nullable=True))
    op.create_index('ix_review_items_kind_open', 'review_items', ['kind', 'resolved_at'])
    op.create_index('ix_followers_state', 'followers', ['state', 'id'])


def downgrade() -> None:
    op.drop_index('ix_followers_state', table_name='followers')
    op.drop_index('ix_review_items_kind_open', table_name='review_items')
    with op.batch_alter_table('review_items') as batch:
        batch.drop_column('copy_bytes')
        batch.drop_column('caller')
