"""An example table; replace it with your own models (one module per table or per topic)."""

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class Item(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)
    description: str | None = Field(default=None)
    # The database fills this in, so rows inserted by SQL or by other services get it too.
    created_at: datetime | None = Field(
        default=None,
        sa_type=sa.DateTime(timezone=True),
        sa_column_kwargs={"server_default": sa.func.now(), "nullable": False},
    )
