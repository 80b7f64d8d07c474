"""marketdata.simulation.market: the model alone. Seeded, GBM with the asked-for volatility, Poisson
arrivals, quotes on their side of the mid, cancel/replace at the cap."""
from __future__ import annotations

import math
import statistics

from marketdata.simulation.market import Cancel, Market, MarketParams, Modify, Place

PARAMS = MarketParams(mid_ticks=3_000_000, volatility=0.0005, makers=3, max_quotes=5, half_spread_ticks=300,
                      level_ticks=150, quote_lots=100, take_lots=50, min_lots=1, max_lots=10_000_000)


def play(seed: int, events: int = 3000, can_modify: bool = True) -> tuple[list[object], list[int], Market]:
    """Run the model with an exchange that rests every quote (ids in order) and fills nothing."""
    market = Market(PARAMS, seed=seed, can_modify=can_modify)
    actions: list[object] = []
    mids: list[int] = []
    at = 0.0
    for n in range(events):
        at += market.gap_s(200)
        action = market.step(at)
        actions.append(action)
        mids.append(market.mid_ticks)
        if isinstance(action, Place) and action.role == "quote":
            market.rested(f"o{n:05d}", action)
        elif isinstance(action, Cancel):
            market.gone(action.order_id)
        elif isinstance(action, Modify):
            market.moved(action.order_id, action.price_ticks)
    return actions, mids, market


def test_the_same_seed_makes_the_same_decisions_and_another_seed_others() -> None:
    a, mids_a, _ = play(5)
    b, mids_b, _ = play(5)
    c, mids_c, _ = play(6)
    assert a == b and mids_a == mids_b
    assert a != c and mids_a != mids_c


def test_the_mid_moves_as_geometric_brownian_motion_with_the_volatility_asked() -> None:
    sigma, dt = 0.01, 0.5
    market = Market(MarketParams(mid_ticks=10**12, volatility=sigma, max_price_ticks=10**15), seed=1)
    returns = []
    for n in range(1, 20_001):
        before = market.mid_ticks
        market.advance(n * dt)
        returns.append(math.log(market.mid_ticks / before))
    # log returns: mean (drift - sigma^2/2) dt, standard deviation sigma sqrt(dt)
    assert abs(statistics.stdev(returns) / (sigma * math.sqrt(dt)) - 1) < 0.03
    assert abs(statistics.fmean(returns) + sigma ** 2 / 2 * dt) < 4 * sigma * math.sqrt(dt) / math.sqrt(len(returns))


def test_events_arrive_as_a_poisson_process_and_takers_as_their_share_of_it() -> None:
    market = Market(PARAMS, seed=2)
    gaps = [market.gap_s(200) for _ in range(20_000)]
    assert abs(statistics.fmean(gaps) * 200 - 1) < 0.03
    assert abs(statistics.stdev(gaps) / statistics.fmean(gaps) - 1) < 0.04  # exponential: sd == mean
    actions, _, _ = play(3, events=8000)
    takes = sum(1 for a in actions if isinstance(a, Place) and a.role == "take")
    assert abs(takes / len(actions) - 0.25) < 0.03


def test_quotes_rest_on_their_side_of_the_mid_and_a_maker_at_its_cap_replaces() -> None:
    actions, mids, market = play(4, events=4000)
    kinds = {type(a).__name__ + getattr(a, "why", "") for a in actions}
    assert kinds == {"Place", "Cancelcancel", "Cancelreplace", "Modify"}
    for action, mid in zip(actions, mids):
        if isinstance(action, Place):
            assert PARAMS.min_lots <= action.lots <= PARAMS.max_lots
            if action.role == "quote":
                assert action.price_ticks is not None and action.time_in_force == "GTC"
                assert (action.price_ticks < mid) if action.side == "buy" else (action.price_ticks > mid)
                assert abs(action.price_ticks - mid) >= PARAMS.half_spread_ticks
            elif action.price_ticks is not None:  # a taker's IOC limit goes through the mid
                assert action.time_in_force == "IOC"
                assert (action.price_ticks > mid) if action.side == "buy" else (action.price_ticks < mid)
        elif isinstance(action, Modify):
            assert isinstance(action.price_ticks, int)
    per_maker = [sum(1 for q in market.quotes.values() if q.maker == m) for m in range(PARAMS.makers)]
    assert max(per_maker) <= PARAMS.max_quotes
    sizes = sorted(a.lots for a in actions if isinstance(a, Place) and a.role == "quote")
    assert sizes[len(sizes) * 99 // 100] > 8 * sizes[len(sizes) // 2]  # Pareto: a heavy tail


def test_without_modify_the_makers_only_cancel_and_replace() -> None:
    actions, _, _ = play(5, can_modify=False)
    assert not any(isinstance(a, Modify) for a in actions)
    assert any(isinstance(a, Cancel) for a in actions)
