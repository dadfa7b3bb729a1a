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


@task(queue_name="reports", takes_context=True)
def export_orders(context, chunks: int) -> dict:
    """A slow task that reports its progress: the jobs page shows it as a bar."""
    rows = 0
    for chunk in range(1, chunks + 1):
        time.sleep(0.25)
        rows += random.randint(50, 150)
        context.report_progress(chunk, chunks, f"{rows} orders exported")
    return {"orders": rows}


@task
def charge_card(order_number: int) -> None:
    """A task that fails."""
    raise ConnectionError(f"The payment provider refused order {order_number}.")


@task
async def fetch_exchange_rate(currency: str) -> float:
    """An async task, run on the worker's event loop."""
    await asyncio.sleep(0.2)
    return round(random.uniform(0.8, 1.2), 4)
