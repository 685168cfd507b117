"""state several node processes share: image bytes ([blobs] backend = "database"),
admin flashes and failed-login counts

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-01 23:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0019'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'blobs',
        sa.Column('namespace', sa.String(length=16), primary_key=True),
        sa.Column('sha256', sa.String(length=64), primary_key=True),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'admin_login_failures',
        sa.Column('key', sa.String(length=120), primary_key=True),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('last_at', sa.Float(), nullable=False),
    )
    with op.batch_alter_table('admin_sessions') as batch:
        batch.add_column(sa.Column('flash', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('admin_sessions') as batch:
        batch.drop_column('flash')
    op.drop_table('admin_login_failures')
    op.drop_table('blobs')
