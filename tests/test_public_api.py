"""The front doors: the names DESIGN.md promises exist, and every __all__ is sorted and complete."""

from __future__ import annotations

import importlib
import inspect
import re
import types
from collections.abc import Iterator

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


PUBLIC_MODULES = [
    "retrypolicy",
    "retrypolicy.testing",
    "retrypolicy.instrumentation",
    "retrypolicy.instrumentation.prometheus",
    "retrypolicy.typing",
    "retrypolicy.transport",
    "retrypolicy.stores",
    "retrypolicy.batch",
    "retrypolicy_requests",
    "retrypolicy_httpx",
    "retrypolicy_httpx.httpx2",
    "retrypolicy_urllib3",
    "retrypolicy_aiohttp",
    "retrypolicy_openai",
]
"""Every module whose ``__all__`` is the public API: its names, and the types they show."""


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_all_is_sorted_and_complete(module: str) -> None:
    """__all__ is sorted, and lists exactly the module's public, non-module attributes."""
    mod = importlib.import_module(module)
    exported = list(mod.__all__)
    # isort-style, as ruff keeps it: CONSTANTS, then Classes, then functions and modules
    assert exported == sorted(
        exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    ours = (
        "retrypolicy",
        "retrypolicy_requests",
        "retrypolicy_httpx",
        "retrypolicy_urllib3",
        "retrypolicy_aiohttp",
        "retrypolicy_openai",
    )

    def is_ours(value: object) -> bool:
        origin = getattr(value, "__module__", None) or ""
        return origin.split(".")[0] in ours

    public_elsewhere = {id(getattr(rp, n)) for n in rp.__all__} | {
        id(getattr(rp.typing, n)) for n in rp.typing.__all__
    }
    leaked = {
        name
        for name, value in vars(mod).items()
        if not name.startswith("_")
        and name not in exported
        and not isinstance(value, types.ModuleType)  # submodules are reached by their path
        and is_ours(value)
        and id(value) not in public_elsewhere  # an annotation's type, public at its home
    }
    assert leaked == set()
    assert all(hasattr(mod, name) for name in exported)


@pytest.mark.parametrize(
    ("adapter", "names"),
    [
        ("retrypolicy_requests", ["RetryAdapter"]),
        ("retrypolicy_httpx", ["AsyncRetryTransport", "RetryTransport"]),
        ("retrypolicy_urllib3", ["PolicyRetry"]),
        ("retrypolicy_aiohttp", ["RetryMiddleware"]),
        ("retrypolicy_openai", ["api_error", "async_client", "classify", "client", "wrap"]),
    ],
)
def test_adapter_names(adapter: str, names: list[str]) -> None:
    """The adapter classes DESIGN.md names are importable from their packages."""
    mod = importlib.import_module(adapter)
    for name in names:
        assert hasattr(mod, name)


FRONT_DOOR = {
    *DESIGN_NAMES,
    "HTTP",
    "Rule",
    "Failure",
    "Attempt",
    "Attempts",
    "attempts",
    "dump_policy",
    "register_exception",
    "instrumentation",
    "transport",
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ClientError",
    "InternalServerError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    # storm protection (docs/storm.md)
    "RetryBudget",
    "AdaptiveLimiter",
    "CircuitBreaker",
    "CircuitOpenError",
    "stores",
    # simulating a policy (docs/simulate.md)
    "simulate",
    "Scenario",
    "Simulation",
}


def test_front_door_is_curated() -> None:
    """retrypolicy.__all__ is DESIGN.md's names, the error tree and what users type: the
    engine's values live in documented submodules."""
    assert set(rp.__all__) == FRONT_DOOR


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("Outcome", "retrypolicy.transport"),
        ("Decision", "retrypolicy.transport"),
        ("AttemptState", "retrypolicy.transport"),
        ("EXHAUSTED", "retrypolicy.transport"),
        ("api_error", "retrypolicy.transport"),
        ("redact", "retrypolicy.transport"),
        ("parse_retry_after", "retrypolicy.transport"),
        ("retry_after_from_headers", "retrypolicy.transport"),
        ("RetryEvent", "retrypolicy.instrumentation"),
    ],
)
def test_moved_names_still_resolve_with_a_warning(name: str, home: str) -> None:
    """Code written against the earlier front door keeps working, told where the name went."""
    with pytest.warns(DeprecationWarning, match=home.replace(".", r"\.")):
        value = getattr(rp, name)
    assert value is getattr(importlib.import_module(home), name)


def test_import_does_no_work_beyond_reexports() -> None:
    """import retrypolicy loads no HTTP server and no transport library."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, retrypolicy; "
        "print(sorted(m for m in ('http.server', 'requests', 'httpx', 'urllib3', 'aiohttp', "
        "'retrypolicy.testing') if m in sys.modules))"
    )
    out = subprocess.run(  # noqa: S603 - our own interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


_PRIVATE_NAME = re.compile(r"(?<![\w.])_[A-Za-z]\w*")
KNOWN_PRIVATE_TYPES = {
    # users never build an Attempt (rp.attempts() hands them out, bound to the call's
    # private session): its constructor is documented as such, not as an entry point
    "retrypolicy.Attempt.__init__": ["_Session"],
}


def _annotated(name: str, obj: object) -> Iterator[tuple[str, str]]:
    """(where, annotation text) for every annotation a user of *obj* reads in its signature:
    a function's, a class's constructor and public methods, properties and fields."""
    members: list[tuple[str, object]] = [(name, obj)]
    if inspect.isclass(obj):
        members = []
        for attr, member in vars(obj).items():
            if attr.startswith("_") and attr != "__init__":
                continue
            if isinstance(member, classmethod | staticmethod):
                member = member.__func__  # noqa: PLW2901 - the function behind the descriptor
            if isinstance(member, property):
                member = member.fget  # noqa: PLW2901
            if inspect.isfunction(member):
                members.append((f"{name}.{attr}", member))
        for field, annotation in vars(obj).get("__annotations__", {}).items():
            if not field.startswith("_"):
                yield f"{name}.{field}", str(annotation)
    for where, member in members:
        if not callable(member):
            continue
        try:
            signature = inspect.signature(member)
        except (TypeError, ValueError):  # a builtin without one
            continue
        for p in signature.parameters.values():
            if p.annotation is not p.empty:
                yield where, str(p.annotation)
        if signature.return_annotation is not signature.empty:
            yield where, str(signature.return_annotation)


def test_public_signatures_name_only_public_types() -> None:
    """No public function, constructor, method or field is annotated with a private name
    (``_Hint``, ``_Store``): what help() and the API reference show, a user can read and type."""
    found: dict[str, list[str]] = {}
    for module in PUBLIC_MODULES:
        mod = importlib.import_module(module)
        for name in mod.__all__:
            for where, text in _annotated(f"{module}.{name}", getattr(mod, name)):
                if private := _PRIVATE_NAME.findall(text):
                    found.setdefault(where, []).extend(private)
    assert found == KNOWN_PRIVATE_TYPES
