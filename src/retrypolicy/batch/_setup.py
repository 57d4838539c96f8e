"""Setup errors: a failure that says the *batch* is wrong, not the job.

A wrong API key answers every job 401; a wrong base URL answers every job 404; a wrong
model, 400; a plan that does not allow the API, 403. Run to the end, such a batch pays
for nothing but still marks every job failed for good. So the runner asks, after each
job that failed for good, :func:`setup_error`: has the batch shown a setup error?

- a 401 (``authentication``) is one at once: no key problem is per job;
- any other failure kind an HTTP status gives (400, 403, 404, other 4xx) is one when the
  first :data:`PROBE` jobs that failed with it finished before any job of this run
  succeeded. After a success, the same kind is a per-job failure (a real 404 for one id).
  So is ``connection`` (no server answers at the base URL), though a rerun may retry it.

Pure: the runner holds the counts and performs what follows (stop handing out jobs, put
the jobs that got it back to pending). So that the answer comes before the batch has paid
for one request per worker, the runner keeps at most :data:`PROBE` jobs in flight until a
job of the run succeeds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .._rules import Kind

__all__ = ["PROBE", "SETUP_KINDS", "may_show_setup", "setup_error", "what_to_fix"]

PROBE: Final = 3
"""Jobs failed with one kind, none succeeded: the batch stops (a 401 stops at the first)."""

SETUP_KINDS: Final = frozenset(
    str(k)
    for k in (
        Kind.AUTHENTICATION,
        Kind.INVALID_REQUEST,
        Kind.PERMISSION,
        Kind.NOT_FOUND,
        Kind.CLIENT_ERROR,
        Kind.CONNECTION,
    )
)
"""The kinds that can say the batch's setup is wrong: final client errors of HTTP, and
a server that never answers."""


def may_show_setup(kind: str, *, retryable: bool) -> bool:
    """Whether a failure of *kind* may show a setup error (else it is the job's own): a
    kind the policy retries is the job's, but for a connection that was never made."""
    return kind in SETUP_KINDS and not (retryable and kind != Kind.CONNECTION)


def setup_error(kind: str, *, retryable: bool, succeeded: int, failed: Mapping[str, int]) -> bool:
    """Whether a job that just failed with *kind* shows a setup error.

    *succeeded*: the jobs of this run done so far; *failed*: this run's jobs failed per
    kind so far, this one included.
    """
    if not may_show_setup(kind, retryable=retryable):
        return False
    if kind == Kind.AUTHENTICATION:
        return True
    return succeeded == 0 and failed.get(kind, 0) >= PROBE


_ADVICE: Final = {
    str(Kind.AUTHENTICATION): (
        "the API refused the key: check EUGPT_API_KEY (sent as `Bearer eugpt_...`, not "
        "revoked, issued by the environment --base-url points at)"
    ),
    str(Kind.NOT_FOUND): (
        "check --base-url: the API's base, such as https://api.example.eu (with or "
        "without /v1), which has /v1/responses"
    ),
    str(Kind.INVALID_REQUEST): (
        "check the request bodies of the input (its model, its input field): the API "
        "refused them as invalid"
    ),
    str(Kind.CONNECTION): (
        "check --base-url: no server answered there (a typo in the host or the port?)"
    ),
    str(Kind.PERMISSION): (
        "check the key's project membership and the organisation's plan: the API "
        "refused the operation"
    ),
}


def what_to_fix(kind: str) -> str:
    """One sentence: what a setup error of *kind* asks the user to fix."""
    return _ADVICE.get(kind, "check --base-url, the key and the request bodies")
