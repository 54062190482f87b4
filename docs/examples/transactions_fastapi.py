"""A FastAPI shop on PostgreSQL whose orders and their e-mail jobs commit together.

POST /orders stores the order, enqueues its confirmation e-mail and reserves
the stock in one transaction of the shop's own asyncpg pool: an order that
fails (not enough stock) leaves neither the order nor its job. The e-mail job
records the e-mail sent, and itself done, in one transaction too.

The shop's tables must be in the store's database: ``create_app`` takes the
shop's DSN (by default the store's ``store.dsn``; the shop's role needs only
the grants listed in docs/transactions.md) and schema. Run it with
``MASA_JOBS_STORE__BACKEND=postgres MASA_JOBS_STORE__DSN=postgresql://...
uvicorn transactions_fastapi:create_app --factory``.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel, Field

from masa_jobs import BackgroundJob, JobManager, MasaApp, current_job, job_name

TABLES = """
CREATE TABLE IF NOT EXISTS stock (item text PRIMARY KEY, available integer NOT NULL);
CREATE TABLE IF NOT EXISTS orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    item text NOT NULL,
    quantity integer NOT NULL
);
CREATE TABLE IF NOT EXISTS sent_emails (
    order_id bigint PRIMARY KEY REFERENCES orders (id),
    sent_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO stock VALUES ('mug', 10), ('teapot', 2) ON CONFLICT DO NOTHING;
"""


class Shop:
    """The shop's connection pool, opened by the app's lifespan."""

    pool: asyncpg.Pool

    async def open(self, dsn: str, schema: str) -> None:
        self.pool = await asyncpg.create_pool(dsn, server_settings={"search_path": schema})
        await self.pool.execute(TABLES)

    async def close(self) -> None:
        await self.pool.close()


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append(f"{to}: {subject}")


class Container(BackgroundJobContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    shop = providers.Singleton(Shop)
    mailer = providers.Singleton(Mailer)


@job_name("orders.confirmation-email")
class OrderConfirmation(BaseModel):
    order_id: int


class SendOrderConfirmation(BackgroundJob[OrderConfirmation]):
    @inject
    def __init__(
        self,
        shop: Shop = Provide[Container.shop],
        mailer: Mailer = Provide[Container.mailer],
    ) -> None:
        self.shop, self.mailer = shop, mailer

    async def execute(self, args: OrderConfirmation) -> None:
        async with self.shop.pool.acquire() as conn, conn.transaction():
            email = await conn.fetchval("SELECT email FROM orders WHERE id = $1", args.order_id)
            await self.mailer.send(email, f"Your order {args.order_id} is confirmed")
            await conn.execute("INSERT INTO sent_emails (order_id) VALUES ($1)", args.order_id)
            # Last, just before the commit: this row and the job's completion
            # commit together, so the job never runs again once the row is there.
            await current_job().complete_in(conn)


class NewOrder(BaseModel):
    email: str
    item: str
    quantity: int = Field(gt=0)


router = APIRouter()
InjectedShop = Annotated[Shop, Depends(Provide[Container.shop])]
InjectedJobManager = Annotated[JobManager, Depends(Provide[Container.job_manager])]


@router.post("/orders", status_code=201)
@inject
async def place_order(
    body: NewOrder, shop: InjectedShop, manager: InjectedJobManager
) -> dict[str, Any]:
    async with shop.pool.acquire() as conn, conn.transaction():
        order_id = await conn.fetchval(
            "INSERT INTO orders (email, item, quantity) VALUES ($1, $2, $3) RETURNING id",
            body.email,
            body.item,
            body.quantity,
        )
        # Stored in this transaction: workers see the job only once it commits.
        job_id = await manager.enqueue(OrderConfirmation(order_id=order_id), connection=conn)
        left = await conn.fetchval(
            "UPDATE stock SET available = available - $2 WHERE item = $1 RETURNING available",
            body.item,
            body.quantity,
        )
        if left is None or left < 0:
            # Raised inside the block: the order and its job roll back together.
            raise HTTPException(status_code=409, detail=f"not enough {body.item} in stock")
    return {"order_id": order_id, "job_id": job_id}


@router.get("/orders/{order_id}")
@inject
async def get_order(order_id: int, shop: InjectedShop) -> dict[str, Any]:
    row = await shop.pool.fetchrow(
        "SELECT o.item, o.quantity, s.order_id IS NOT NULL AS email_sent"
        " FROM orders AS o LEFT JOIN sent_emails AS s ON s.order_id = o.id WHERE o.id = $1",
        order_id,
    )
    if row is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return dict(row)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    container = app.state.container
    shop = container.shop()
    # The shop's pool opens first and closes last: the worker's jobs use it.
    dsn = app.state.shop_dsn or container.config.store.dsn()
    await shop.open(dsn, app.state.shop_schema)
    try:
        async with MasaApp.lifespan():  # opens the store; the worker runs beside the app
            yield
    finally:
        await shop.close()


def create_app(
    config: dict[str, Any] | None = None, shop_dsn: str | None = None, shop_schema: str = "public"
) -> FastAPI:
    container = Container()
    if config is not None:
        container.config.from_dict(config)  # set in code: wins over MASA_JOBS_... variables
    MasaApp.build(container)
    app = FastAPI(lifespan=lifespan)
    app.state.container = container
    app.state.shop_dsn, app.state.shop_schema = shop_dsn, shop_schema
    app.include_router(router)
    return app
