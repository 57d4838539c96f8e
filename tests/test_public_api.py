"""The front doors: the names DESIGN.md promises exist, and every __all__ is sorted and complete."""

from __future__ import annotations

import importlib
import types

import pytest

import retrypolicy as rp

DESIGN_NAMES = [
    "EUGPT",
    "Policy",
    "Kind",
    "parse_error",
    "ErrorInfo",
    "Classification",
    "Backoff",
    "load_policy",
    "ConfigError",
    "retry",
    "APIError",
    "StreamError",
    "testing",
]


@pytest.mark.parametrize("name", DESIGN_NAMES)
def test_design_names_exist(name: str) -> None:
    """Every public name of DESIGN.md is importable from retrypolicy."""
    assert hasattr(rp, name)


def test_design_methods_exist() -> None:
    """The methods DESIGN.md promises are there."""
    assert callable(rp.EUGPT.classify)
    assert callable(rp.EUGPT.evolve)
    assert callable(rp.EUGPT.retry)
    assert callable(rp.EUGPT.backoff.delay)
    assert callable(rp.testing.instant)
    assert issubclass(rp.StreamError, rp.APIError)
    assert issubclass(rp.ConfigError, ValueError)


@pytest.mark.parametrize(
    "module",
    [
        "retrypolicy",
        "retrypolicy.testing",
        "retrypolicy.instrumentation",
        "retrypolicy.typing",
        "retrypolicy_requests",
        "retrypolicy_httpx",
        "retrypolicy_urllib3",
    ],
)
def test_all_is_sorted_and_complete(module: str) -> None:
    """__all__ is sorted, and lists exactly the module's public, non-module attributes."""
    mod = importlib.import_module(module)
    exported = list(mod.__all__)
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions and modules
    assert exported == sorted(
        exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    ours = ("retrypolicy", "retrypolicy_requests", "retrypolicy_httpx", "retrypolicy_urllib3")

    def is_ours(value: object) -> bool:
        origin = getattr(value, "__module__", None) or ""
        return origin.split(".")[0] in ours

    leaked = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and name not in exported
        and not isinstance(value, types.ModuleType)  # submodules are reached by their path
        and is_ours(value)
    }
    assert leaked == set()
    assert all(hasattr(mod, name) for name in exported)


@pytest.mark.parametrize(
    ("adapter", "names"),
    [
        ("retrypolicy_requests", ["RetryAdapter"]),
        ("retrypolicy_httpx", ["AsyncRetryTransport", "RetryTransport"]),
        ("retrypolicy_urllib3", ["PolicyRetry"]),
    ],
)
def test_adapter_names(adapter: str, names: list[str]) -> None:
    """The adapter classes DESIGN.md names are importable from their packages."""
    mod = importlib.import_module(adapter)
    for name in names:
        assert hasattr(mod, name)
