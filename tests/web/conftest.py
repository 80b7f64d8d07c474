from tests.web.browser import browser  # noqa: F401  (the fixture)
