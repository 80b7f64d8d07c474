"""matching.worker.metrics without a database: the traded quantity counted exactly."""
from __future__ import annotations

from decimal import Decimal

import pytest

from matching.engine.types import InstrumentSpec
from matching.worker import metrics


@pytest.mark.skipif(not metrics.ENABLED, reason="PGBOURSE_METRICS=off")
def test_the_traded_quantity_is_the_exact_total_however_many_small_fills_made_it() -> None:
    spec = InstrumentSpec("DRIFT-USD", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("1000"),
                          Decimal("1000000"))
    def counted() -> float:
        return sum(sample.value for family in metrics.TRADED_QUANTITY.collect() for sample in family.samples
                   if sample.name == "traded_quantity_total" and sample.labels.get("instrument") == "DRIFT-USD")

    before = counted()
    for _ in range(10_000):
        metrics.traded("DRIFT-USD", spec, 1)  # 0.0001 each
    # (summed one float at a time, 10,000 x 0.0001 is 0.9999999999999062)
    assert counted() - before == 1.0
