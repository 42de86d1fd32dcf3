"""Fixture plugins live in tests/support; each area registers its own module here."""

pytest_plugins: list[str] = [
    "tests.support.kube",
    "tests.support.redis",
    "tests.support.redis_ha",
    "tests.support.postgres",
    "tests.support.wire",
    "tests.support.pod",
    "tests.support.node",
    "tests.support.browser",
    "tests.support.migration",
]
