"""image bytes in the database for several node processes ([blobs] backend = "database")

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


def downgrade() -> None:
    op.drop_table('blobs')
