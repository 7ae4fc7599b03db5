"""An example CRUD router for the example `Item` model; replace it with your own resources."""

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import StringConstraints, field_validator
from sqlmodel import SQLModel, col, select

from ..models.item import Item
from .dependencies import Session

router = APIRouter(prefix="/items", tags=["items"])

# What the table can hold, checked before the database sees it: a value it would refuse is a 422
# with the reason, not a 500. Ids are BIGINT; text holds no NUL byte{% if cookiecutter.database == "mysql" %}, and a name fits VARCHAR(255){% endif %}.
ItemId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
{%- if cookiecutter.database == "mysql" %}
Name = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
{%- else %}
Name = Text
{%- endif %}


class ItemCreate(SQLModel):
    name: Name
    description: Text | None = None


class ItemUpdate(SQLModel):
    name: Name | None = None
    description: Text | None = None

    @field_validator("name")
    @classmethod
    def _name_is_required(cls, name: str | None) -> str:
        # Left out, it keeps its value (defaults are not validated); given, it cannot be null.
        if name is None:
            raise ValueError("name cannot be null: leave it out to keep the current name")
        return name


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_item(item: ItemCreate, session: Session) -> Item:
    row = Item.model_validate(item)
    session.add(row)
    await session.commit()
    # The database fills in the id and created_at.
    await session.refresh(row)
    return row


@router.get("")
async def list_items(
    session: Session,
    offset: int = Query(default=0, ge=0),
    limit: int = Query(default=100, ge=1, le=1000),
) -> Sequence[Item]:
    result = await session.scalars(select(Item).order_by(col(Item.id)).offset(offset).limit(limit))
    return result.all()


@router.get("/{item_id}")
async def read_item(item_id: ItemId, session: Session) -> Item:
    return await _get_or_404(session, item_id)


@router.patch("/{item_id}")
async def update_item(item_id: ItemId, changes: ItemUpdate, session: Session) -> Item:
    row = await _get_or_404(session, item_id)
    row.sqlmodel_update(changes.model_dump(exclude_unset=True))
    await session.commit()
    await session.refresh(row)
    return row


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: ItemId, session: Session) -> None:
    row = await _get_or_404(session, item_id)
    await session.delete(row)
    await session.commit()


async def _get_or_404(session: Session, item_id: int) -> Item:
    row = await session.get(Item, item_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Item {item_id} not found")
    return row
