"""a role for each admin login: admin (everything) or moderator (review only)

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-01 23:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Logins that exist today were all full admins; they stay so.
    with op.batch_alter_table('admin_users') as batch:
        batch.add_column(sa.Column('role', sa.String(length=16), nullable=False,
                                   server_default='admin'))


def downgrade() -> None:
    with op.batch_alter_table('admin_users') as batch:
        batch.drop_column('role')
