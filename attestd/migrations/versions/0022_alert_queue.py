"""alert queue: hits waiting to be told to admins ([alerts]), kept until a message
about them was sent, so a process killed before telling them leaves them to the next

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02 01:35:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'alert_queue',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('event', sa.JSON(), nullable=False),
        sa.Column('owner', sa.String(length=40), nullable=False),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_alert_queue_lease', 'alert_queue', ['lease_until'])


def downgrade() -> None:
    op.drop_index('ix_alert_queue_lease', table_name='alert_queue')
    op.drop_table('alert_queue')
