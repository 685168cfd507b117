"""hash list entries can carry an md5 of the whole file (HMA md5 / video_md5 signals);
hash lists fetched from a URL, with how their last refresh went

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-02 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('hash_entries') as batch:
        batch.add_column(sa.Column('md5', sa.String(length=32), nullable=True))
    op.create_index('ix_hash_entries_md5', 'hash_entries', ['md5'])
    op.create_table(
        'hash_list_urls',
        sa.Column('source', sa.String(length=80), primary_key=True),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('label', sa.String(length=32), nullable=True),
        sa.Column('refresh_hours', sa.Float(), nullable=True),
        sa.Column('last_try_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_ok_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('entries', sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table('hash_list_urls')
    op.drop_index('ix_hash_entries_md5', table_name='hash_entries')
    with op.batch_alter_table('hash_entries') as batch:
        batch.drop_column('md5')
