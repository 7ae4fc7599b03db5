"""An example CRUD router for the example `Item` model; replace it with your own resources."""

from collections.abc import Sequence

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import SQLModel, col, select

from ..models.item import Item
from .dependencies import Session

router = APIRouter(prefix="/items", tags=["items"])


class ItemCreate(SQLModel):
    name: str
    description: str | None = None


class ItemUpdate(SQLModel):
    name: str | None = None
    description: str | None = None


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
async def read_item(item_id: int, session: Session) -> Item:
    return await _get_or_404(session, item_id)


@router.patch("/{item_id}")
async def update_item(item_id: int, changes: ItemUpdate, session: Session) -> Item:
    row = await _get_or_404(session, item_id)
    row.sqlmodel_update(changes.model_dump(exclude_unset=True))
    await session.commit()
    await session.refresh(row)
    return row


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_item(item_id: int, session: Session) -> None:
    row = await _get_or_404(session, item_id)
    await session.delete(row)
    await session.commit()


async def _get_or_404(session: Session, item_id: int) -> Item:
    row = await session.get(Item, item_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Item {item_id} not found")
    return row
