"""review items: the pict-rs aliases a sweep found them under, and why no copy was kept

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02 01:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('aliases', sa.JSON(), nullable=True))
        batch.add_column(sa.Column('copy_note', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.drop_column('copy_note')
        batch.drop_column('aliases')
