from tests.marketdata.browser import browser  # noqa: F401 - the fixture the trading page tests use
