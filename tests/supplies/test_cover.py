"""Days of cover: history vs forecast, whichever runs out sooner; low by level or by cover."""

import uuid

from service.supplies.model import UsageRule
from service.supplies.service import Activity, stock_level


def row(**fields):
    base = {
        "site_id": uuid.uuid4(), "item_id": uuid.uuid4(), "sku": "X-1", "name": "x", "unit": "piece", "category": "ppe",
        "usage_rule": UsageRule.PER_OCCUPIED_BED_DAY.value, "usage_rate": 2.0, "quantity": 100, "reorder_level": 10,
        "target_level": 200, "low": False, "version": 1, "issued_7d": 70,
    }
    return {**base, **fields}


def test_forecast_sooner_than_history(settings):
    # history 10/day -> 10 days; forecast 2 per bed x 25 beds = 50/day -> 2 days: forecast wins, and it is low (< 3 days)
    level = stock_level(row(), Activity(occupied_beds=25, swabs_per_day=None, staff_shifts=6), settings)
    assert (level.daily_usage_history, level.daily_usage_forecast, level.days_of_cover, level.low) == (10.0, 50.0, 2.0, True)


def test_history_sooner_than_forecast(settings):
    level = stock_level(row(), Activity(occupied_beds=1, swabs_per_day=None, staff_shifts=6), settings)
    assert (level.days_of_cover, level.low) == (10.0, False)


def test_unknown_driver_falls_back_to_history_and_no_usage_means_no_cover(settings):
    level = stock_level(row(usage_rule="per_swab"), Activity(occupied_beds=5, swabs_per_day=None, staff_shifts=6), settings)
    assert (level.daily_usage_forecast, level.days_of_cover) == (None, 10.0)
    idle = stock_level(row(issued_7d=0, usage_rule="fixed_per_day", usage_rate=0), None, settings)
    assert (idle.days_of_cover, idle.low) == (None, False)
    below = stock_level(row(issued_7d=0, quantity=5), None, settings)
    assert below.low  # under the reorder level whatever the cover
