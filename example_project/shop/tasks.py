"""The shop's background work: one task of each kind the queue runs."""

import asyncio
import random
import time

from django.tasks import task


@task
def send_receipt(order_number: int) -> str:
    """A quick task."""
    return f"Receipt for order {order_number} sent."


@task(queue_name="reports")
def build_sales_report(seconds: float) -> dict:
    """A slow task."""
    time.sleep(seconds)
    return {"orders": random.randint(10, 99), "took_seconds": seconds}


@task
def charge_card(order_number: int) -> None:
    """A task that fails."""
    raise ConnectionError(f"The payment provider refused order {order_number}.")


@task
async def fetch_exchange_rate(currency: str) -> float:
    """An async task, run on the worker's event loop."""
    await asyncio.sleep(0.2)
    return round(random.uniform(0.8, 1.2), 4)
