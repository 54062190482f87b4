"""The transactions example: an order and its e-mail job commit together, or neither does.

Real PostgreSQL: each test has a store schema and a shop schema of its own,
dropped afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from masa_jobs import JobState
from tests.services import POSTGRES_DSN, drop_postgres_schema, require_service, unique_name

from .support import load_example

pytestmark = pytest.mark.anyio

# A local server runs the e-mail job within milliseconds of the commit (NOTIFY).
TIMEOUT = timedelta(seconds=15)


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, object]]:
    return ("asyncio", {})  # asyncpg runs on asyncio only


@dataclass(frozen=True)
class Schemas:
    store: str
    shop: str


@pytest.fixture
def schemas() -> Iterator[Schemas]:
    require_service("PostgreSQL", POSTGRES_DSN)
    schemas = Schemas(store=unique_name(), shop=unique_name())
    _run_sql(f'CREATE SCHEMA "{schemas.shop}"')
    yield schemas
    drop_postgres_schema(schemas.store)
    drop_postgres_schema(schemas.shop)


def _run_sql(sql: str) -> None:
    """Run administrative SQL (as the test server's superuser), outside any test's loop."""

    async def run() -> None:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(run())


def _config(schemas: Schemas) -> dict[str, Any]:
    return {"store": {"backend": "postgres", "dsn": POSTGRES_DSN, "schema": schemas.store}}


@asynccontextmanager
async def _serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client,
    ):
        yield client


async def test_an_order_commits_with_its_job_which_records_the_email_sent(
    schemas: Schemas,
) -> None:
    example = load_example("transactions_fastapi")
    app: FastAPI = example.create_app(_config(schemas), shop_schema=schemas.shop)
    container = app.state.container
    async with _serving(app) as client:
        response = await client.post(
            "/orders", json={"email": "ada@example.com", "item": "mug", "quantity": 3}
        )
        assert response.status_code == 201, response.text
        order_id, job_id = response.json()["order_id"], response.json()["job_id"]
        info = await container.job_manager().wait(job_id, timeout=TIMEOUT)
        order = (await client.get(f"/orders/{order_id}")).json()
        mugs_left = await container.shop().pool.fetchval(
            "SELECT available FROM stock WHERE item = 'mug'"
        )

    assert (info.state, info.attempts) == (JobState.SUCCEEDED, 1)
    assert info.args == {"order_id": order_id}
    # The job succeeded in the transaction that recorded the e-mail: both or neither.
    assert order == {"item": "mug", "quantity": 3, "email_sent": True}
    assert container.mailer().sent == [f"ada@example.com: Your order {order_id} is confirmed"]
    assert mugs_left == 7


async def test_an_order_that_fails_after_the_enqueue_leaves_neither_order_nor_job(
    schemas: Schemas,
) -> None:
    example = load_example("transactions_fastapi")
    app: FastAPI = example.create_app(_config(schemas), shop_schema=schemas.shop)
    container = app.state.container
    async with _serving(app) as client:
        # Two teapots are in stock: the reservation after the enqueue fails.
        response = await client.post(
            "/orders", json={"email": "bob@example.com", "item": "teapot", "quantity": 3}
        )
        pool = container.shop().pool
        orders = await pool.fetchval("SELECT count(*) FROM orders")
        teapots_left = await pool.fetchval("SELECT available FROM stock WHERE item = 'teapot'")
        jobs = await container.job_manager().list()

    assert response.status_code == 409
    assert response.json() == {"detail": "not enough teapot in stock"}
    assert orders == 0
    assert jobs == [], "the job was rolled back with the order"
    assert teapots_left == 2
    assert container.mailer().sent == []


@pytest.fixture
def app_role(schemas: Schemas) -> Iterator[str]:
    """A login role that owns the shop's schema and has no right on the store's yet."""
    role = unique_name("masa_app")
    _run_sql(f'CREATE ROLE "{role}" LOGIN; ALTER SCHEMA "{schemas.shop}" OWNER TO "{role}"')
    yield role
    # Before the schemas' teardown (fixtures end in reverse order): the schema
    # the role owns goes first, then its grants (DROP OWNED), then the role.
    _run_sql(f'DROP SCHEMA IF EXISTS "{schemas.shop}" CASCADE; DROP OWNED BY "{role}"')
    _run_sql(f'DROP ROLE "{role}"')


async def test_the_grants_the_page_lists_let_the_app_s_role_enqueue_and_complete(
    schemas: Schemas, app_role: str
) -> None:
    """docs/transactions.md: USAGE on the store's schema and SELECT, INSERT,
    UPDATE on its jobs table are all the application's role needs."""
    example = load_example("transactions_fastapi")
    address = urlsplit(POSTGRES_DSN)
    shop_dsn = urlunsplit(address._replace(netloc=f"{app_role}@{address.netloc.split('@')[-1]}"))
    app: FastAPI = example.create_app(_config(schemas), shop_dsn=shop_dsn, shop_schema=schemas.shop)
    container = app.state.container
    manager = container.job_manager()
    async with _serving(app) as client:
        # The store exists now (the lifespan opened it): grant what the page lists.
        store = f'"{schemas.store}"'
        async with _superuser() as admin:
            await admin.execute(
                f'GRANT USAGE ON SCHEMA {store} TO "{app_role}";'
                f'GRANT SELECT, INSERT, UPDATE ON {store}.jobs TO "{app_role}"'
            )
        response = await client.post(
            "/orders", json={"email": "ada@example.com", "item": "mug", "quantity": 1}
        )
        assert response.status_code == 201, response.text
        order_id, job_id = response.json()["order_id"], response.json()["job_id"]
        info = await manager.wait(job_id, timeout=TIMEOUT)
        # The unique-key path too: a second enqueue of a held key frees the
        # keys whose period ended, then answers the holder.
        keyed = example.OrderConfirmation(order_id=order_id)
        async with container.shop().pool.acquire() as conn, conn.transaction():
            user = await conn.fetchval("SELECT current_user")
            first = await manager.enqueue(
                keyed, delay=3600, unique_key="resend", unique_for=60, connection=conn
            )
            second = await manager.enqueue(
                keyed, delay=3600, unique_key="resend", unique_for=60, connection=conn
            )
        order = (await client.get(f"/orders/{order_id}")).json()

    assert user == app_role
    assert (info.state, info.attempts) == (JobState.SUCCEEDED, 1)
    assert order["email_sent"] is True
    assert (first.duplicate, second.duplicate, second) == (False, True, first)


@asynccontextmanager
async def _superuser() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        yield connection
    finally:
        await connection.close()
