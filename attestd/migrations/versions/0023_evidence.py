"""evidence: records of preserved items (their bytes, encrypted, live in evidence files)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02 01:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'evidence',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  primary_key=True, autoincrement=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('found_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('preserved_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('retain_until', sa.DateTime(timezone=True), nullable=False),
        sa.Column('location', sa.String(length=64), nullable=True),
        sa.Column('record', sa.JSON(), nullable=False),
        sa.UniqueConstraint('sha256', name='uq_evidence_sha256'),
    )
    op.create_index('ix_evidence_retain_until', 'evidence', ['retain_until'])


def downgrade() -> None:
    op.drop_index('ix_evidence_retain_until', table_name='evidence')
    op.drop_table('evidence')
