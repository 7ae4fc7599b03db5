"""An example table; replace it with your own models (one module per table or per topic)."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Item(SQLModel, table=True):
{%- if cookiecutter.database == "mysql" %}
    # A 64-bit AUTO_INCREMENT key: no 2**31 ceiling.
    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, primary_key=True, autoincrement=True)
    )
{%- else %}
    # A 64-bit identity column: no 2**31 ceiling, and no SERIAL sequence to grant and dump.
    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
{%- endif %}
{%- if cookiecutter.database == "mysql" %}
    # MySQL needs a length for VARCHAR, and indexes only a bounded prefix of TEXT.
    name: str = Field(max_length=255, index=True)
    description: str | None = Field(default=None, sa_type=sa.Text)
{%- else %}
    # Unbounded text: changing a varchar's length later rewrites the table under an exclusive lock.
    name: str = Field(index=True)
    description: str | None = Field(default=None)
{%- endif %}
    # The database fills this in, so rows inserted by SQL or by other services get it too.
    created_at: datetime | None = Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
{%- if cookiecutter.database == "mysql" %}
        sa_column_kwargs={"server_default": sa.func.current_timestamp(), "nullable": False},
{%- else %}
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
{%- endif %}
    )
