"""Forecasters: naive baselines and the Toto, Kronos and Chronos-2 adapters.

Import the model packages lazily (through `load_forecaster`) so `engine.forecasters.naive` and the
console stay free of torch.
"""

from engine.forecasters.base import AGGREGATIONS, Forecast, Forecaster, aggregate

__all__ = ["AGGREGATIONS", "Forecast", "Forecaster", "aggregate"]
