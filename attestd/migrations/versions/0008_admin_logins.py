"""admin passwords and browser sessions; the label a review item was queued with

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'admin_users',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('password_hash', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )
    op.create_table(
        'admin_sessions',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revealed', sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint('token_sha256'),
        sa.ForeignKeyConstraint(['name'], ['admin_users.name'], ondelete='CASCADE'),
    )
    op.create_index('ix_admin_sessions_name', 'admin_sessions', ['name'])
    with op.batch_alter_table('review_items') as batch:
        batch.add_column(sa.Column('label', sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('review_items') as batch:
        batch.drop_column('label')
    op.drop_index('ix_admin_sessions_name', table_name='admin_sessions')
    op.drop_table('admin_sessions')
    op.drop_table('admin_users')
