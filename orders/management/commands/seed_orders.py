"""Place a realistic set of demo orders through the real order path (validation, PostgreSQL,
the matching worker), so a fresh exchange has a book to look at. The worker must be running
(`make run`); orders it has not answered within the ack timeout are reported as pending."""
from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from matching.contract import Transport
from orders import instruments, services
from orders.errors import ApiError
from orders.validation import place_request


class Command(BaseCommand):
    help = "Place N demo orders (limit orders around a mid price, some crossing) through the order path."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--instrument", default="BTC-USD")
        parser.add_argument("--orders", type=int, default=200)
        parser.add_argument("--mid", type=Decimal, default=Decimal("30000"))
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args: Any, **opts: Any) -> None:
        counts = asyncio.run(self._run(opts))
        self.stdout.write(", ".join(f"{n} x HTTP-equivalent {s}" for s, n in sorted(counts.items())))

    async def _run(self, opts: dict[str, Any]) -> Counter[int]:
        inst = await instruments.by_symbol(opts["instrument"])
        if inst is None:
            raise CommandError(f"no instrument {opts['instrument']} (create it in the admin or loaddata instruments)")
        rng = random.Random(opts["seed"])
        tick = inst.spec.tick_size
        counts: Counter[int] = Counter()
        batch = []
        for n in range(opts["orders"]):
            side = rng.choice(["buy", "sell"])
            away = rng.randint(-3, 40) * tick * 10
            price = opts["mid"] - away if side == "buy" else opts["mid"] + away
            qty = inst.spec.lots_to_qty(rng.randint(1, 50) * max(1, inst.spec.qty_to_lots(inst.spec.min_qty)))
            body = {"idempotency_key": f"seed-{opts['seed']}-{n}", "client_id": f"seed-{n % 20}",
                    "instrument": inst.symbol, "side": side, "price": str(price), "quantity": str(qty),
                    "order_id": str(uuid.UUID(int=rng.getrandbits(128)))}
            try:
                batch.append(place_request(body, inst, Transport.LOCAL))
            except ApiError as exc:
                raise CommandError(f"demo order refused: {exc.body()}") from exc
        for start in range(0, len(batch), 100):
            for result in await services.orders_place(batch[start:start + 100]):
                counts[result.status] += 1
        return counts
