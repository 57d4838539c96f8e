"""TOML policy files: loading, inheriting, every error message, writing back, the environment."""

from __future__ import annotations

import os
import pickle
import re
import tomllib
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import retrypolicy as rp
from retrypolicy import Kind
from retrypolicy._config import (
    SCHEMA,
    ConfigFileError,
    dump_policy,
    load_policies,
    load_policy,
    load_policy_with_sources,
)
from retrypolicy._config.literals import toml_string
from retrypolicy._config.load import _OWN, _PROBES, _SUBTABLES, value_keys
from retrypolicy._config.sources import DEFAULT, RULE_VALUES, Origin, RuleSources
from retrypolicy._defaults import CONFIG_ENV, PROFILE_ENV, default_policy

from .strategies import backoffs

DOCS = Path(__file__).parent.parent / "docs" / "configuration.md"

CONTRACT = """\
[policies.batch]            # a named policy; profile="batch" selects it
extends = "eugpt"           # a built-in ("eugpt", "http") or another policy in the file
max_attempts = 8            # first try included
deadline = 120.0            # seconds across all attempts, optional
[policies.batch.backoff]    # initial, multiplier, max_delay, jitter, max_retry_after
initial = 1.0
[[policies.batch.rules]]    # matched in order, before inherited rules; first match wins
status = 503                # int, [ints], or a class "5xx"
code = "upstream_timeout"   # optional; status and/or code
retry = false               # or true
max_retries = 3
kind = "unavailable"        # optional label
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    """Write *text* to a file in *tmp_path* and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, profile: str | None = None) -> rp.Policy:
    """Load *text* as a policy file."""
    return load_policy(write(tmp_path, text), profile)


def error(tmp_path: Path, text: str, profile: str | None = None) -> ConfigFileError:
    """The error loading *text* raises."""
    with pytest.raises(ConfigFileError) as info:
        load(tmp_path, text, profile)
    return info.value


# -- loading ---------------------------------------------------------------------------


def test_contract_example(tmp_path: Path) -> None:
    """The documented example: its rule first, then EU GPT's, backoff merged, limits set."""
    policy = load(tmp_path, CONTRACT)
    assert policy.name == "batch"
    assert (policy.max_attempts, policy.deadline) == (8, 120.0)
    assert policy.backoff == attrs.evolve(rp.EUGPT.backoff, initial=1.0)
    assert policy.rules[1:] == rp.EUGPT.rules
    rule = policy.rules[0]
    assert (rule.kind, rule.retry, rule.max_retries, rule.code) == (
        Kind.UNAVAILABLE,
        False,
        3,
        "upstream_timeout",
    )
    assert not policy.classify(503, "upstream_timeout").retryable
    assert policy.classify(503).retryable
    assert policy.classify(503) == rp.EUGPT.classify(503)


def test_default_extends_is_eugpt(tmp_path: Path) -> None:
    """A policy that names no parent is EU GPT with its changes."""
    policy = load(tmp_path, "[policies.p]\nmax_attempts = 3\n")
    assert policy == rp.EUGPT.evolve(name="p", max_attempts=3)


def test_extends_false_starts_from_nothing(tmp_path: Path) -> None:
    """extends = false: only the policy's own rules, the default Backoff, no limits."""
    policy = load(tmp_path, "[policies.p]\nextends = false\n[[policies.p.rules]]\nstatus = 503\n")
    assert policy.backoff == rp.Backoff()
    assert (policy.max_attempts, policy.deadline) == (None, None)
    assert policy.rules == (rp.Rule(kind=Kind.SERVER_ERROR, retry=False, status=503),)


def test_extends_http(tmp_path: Path) -> None:
    """extends = "http" inherits the generic profile."""
    assert load(tmp_path, '[policies.p]\nextends = "http"\n') == rp.HTTP.evolve(name="p")


def test_extends_a_policy_of_the_file(tmp_path: Path) -> None:
    """A chain: rules stack child-first, backoff keys merge, limits inherit."""
    policy = load(
        tmp_path,
        """
        [policies.base]
        extends = "http"
        deadline = 30
        [policies.base.backoff]
        initial = 2
        [[policies.base.rules]]
        status = 418
        kind = "teapot"

        [policies.child]
        extends = "base"
        [policies.child.backoff]
        max_delay = 4.0
        [[policies.child.rules]]
        code = "busy"
        retry = true
        """,
        "child",
    )
    assert [r.kind for r in policy.rules[:2]] == ["custom", "teapot"]
    assert policy.rules[2:] == rp.HTTP.rules
    assert policy.deadline == 30.0
    assert isinstance(policy.deadline, float)
    assert policy.max_attempts == rp.HTTP.max_attempts
    assert policy.backoff == rp.Backoff(initial=2.0, max_delay=4.0)


def test_false_removes_inherited_limits(tmp_path: Path) -> None:
    """max_attempts = false and deadline = false clear what the parent set."""
    policy = load(
        tmp_path,
        "[policies.a]\ndeadline = 5\nmax_attempts = 4\n"
        '[policies.b]\nextends = "a"\ndeadline = false\nmax_attempts = false\n',
        "b",
    )
    assert (policy.max_attempts, policy.deadline) == (None, None)


def test_a_policy_named_like_a_builtin_customises_it(tmp_path: Path) -> None:
    """[policies.eugpt] extends the built-in; the file's other policies inherit the custom one."""
    text = "[policies.eugpt]\nmax_attempts = 3\n[policies.batch]\ndeadline = 9.0\n"
    assert load(tmp_path, text, "eugpt") == rp.EUGPT.evolve(max_attempts=3)
    assert load(tmp_path, text, "batch") == rp.EUGPT.evolve(
        name="batch", max_attempts=3, deadline=9.0
    )


@pytest.mark.parametrize(
    ("keys", "retry", "max_retries"),
    [
        ("max_retries = 3", True, 3),
        ("retry = true", True, 2),
        ("", False, 0),
        ("max_retries = 0", False, 0),
        ("retry = false", False, 0),
        ("retry = false\nmax_retries = 3", False, 3),
        ("retry = true\nmax_retries = 0", True, 0),
    ],
)
def test_rule_retry_defaults(tmp_path: Path, keys: str, retry: bool, max_retries: int) -> None:
    """retry follows max_retries > 0; max_retries is 2 for a bare retry = true, else 0."""
    rule = load(tmp_path, f"[[policies.p.rules]]\nstatus = 503\n{keys}\n").rules[0]
    assert (rule.retry, rule.max_retries) == (retry, max_retries)


@pytest.mark.parametrize(
    ("extends", "match", "kind"),
    [
        ('"eugpt"', "status = 503", Kind.UNAVAILABLE),
        ('"eugpt"', "status = [502, 504]", Kind.UNAVAILABLE),
        ('"eugpt"', "status = [400, 404]", Kind.CLIENT_ERROR),
        ('"eugpt"', "status = [404, 500]", "custom"),
        ('"eugpt"', 'status = "5xx"', Kind.SERVER_ERROR),
        ('"eugpt"', 'status = "4xx"', Kind.CLIENT_ERROR),
        ('"eugpt"', 'code = "upstream_timeout"', Kind.UPSTREAM_TIMEOUT),
        ('"eugpt"', 'code = "quota"', Kind.STREAM_ERROR),
        ('"eugpt"', 'status = 503\ncode = "quota"', Kind.UNAVAILABLE),
        ('"eugpt"', 'failure = "timeout"', Kind.TIMEOUT),
        ('"http"', 'code = "quota"', "custom"),
        ("false", "status = 429", Kind.CLIENT_ERROR),
        ("false", "status = 302", "custom"),
        ("false", 'failure = "connection"', Kind.CONNECTION),
        ("false", 'failure = "connection"\ncode = "x"', "custom"),
        ("false", 'code = "x"', "custom"),
    ],
)
def test_derived_kind(tmp_path: Path, extends: str, match: str, kind: str) -> None:
    """A rule without kind takes the inherited classification, else its status class.

    (A rule with an inherited rule's very match overrides it in its place, and keeps its kind.)
    """
    text = f"[policies.p]\nextends = {extends}\n[[policies.p.rules]]\n{match}\n"
    alone = load(tmp_path, f"{P}extends = false\n{R}{match}\n").rules[0]
    rule = next(r for r in load(tmp_path, text).rules if same_match(r, alone))
    assert rule.kind == kind


def test_rule_backoff_starts_from_the_policy_backoff(tmp_path: Path) -> None:
    """A rule's backoff table replaces single keys of the policy's (merged) backoff."""
    policy = load(
        tmp_path,
        "[policies.p.backoff]\njitter = 'none'\n"
        "[[policies.p.rules]]\nstatus = 418\nmax_retries = 9\n"
        "[policies.p.rules.backoff]\nmax_delay = 60\n",
    )
    assert policy.rules[0].backoff == rp.Backoff(jitter="none", max_delay=60.0)
    assert policy.rules[5].backoff == rp.EUGPT.rules[4].backoff  # inherited rules keep theirs


def test_profile_selection(tmp_path: Path) -> None:
    """The profile picks a policy and names it; one policy needs no profile."""
    text = "[policies.a]\nmax_attempts = 2\n[policies.b]\nmax_attempts = 3\n"
    assert load(tmp_path, text, "b").name == "b"
    assert load(tmp_path, text, "b").max_attempts == 3
    assert load(tmp_path, "[policies.only]\n").name == "only"


def test_several_policies_and_no_profile(tmp_path: Path) -> None:
    """Without a profile, a file of several policies is an error that lists them."""
    e = error(tmp_path, "[policies.a]\n[policies.b]\n")
    assert e.problems == [
        "profile: expected one of the file's policies (a, b) with profile= "
        "(or RETRYPOLICY_PROFILE), as the file defines several; found none"
    ]


def test_unknown_profile(tmp_path: Path) -> None:
    """An unknown profile lists the file's policies and suggests the closest."""
    e = error(tmp_path, "[policies.batch]\n[policies.interactive]\n", "bacth")
    assert e.problems == [
        "profile: expected one of the file's policies (batch, interactive); "
        'found "bacth" (string); did you mean "batch"?'
    ]


def test_profile_must_be_a_string(tmp_path: Path) -> None:
    """A profile that is not a string is a programming error: TypeError."""
    with pytest.raises(TypeError, match="profile 3"):
        load_policy(write(tmp_path, "[policies.p]\n"), 3)  # type: ignore[arg-type]


def test_path_as_str(tmp_path: Path) -> None:
    """The path may be a str as well as a Path."""
    assert load_policy(str(write(tmp_path, "[policies.p]\n"))).name == "p"


def test_pyproject(tmp_path: Path) -> None:
    """pyproject.toml is read from [tool.retrypolicy]; the rest of the file is ignored."""
    path = write(
        tmp_path,
        '[project]\nname = "svc"\n[tool.ruff]\nline-length = 100\n'
        "[tool.retrypolicy.policies.batch]\nmax_attempts = 4\n",
        "pyproject.toml",
    )
    assert load_policy(path) == rp.EUGPT.evolve(name="batch", max_attempts=4)


def test_pyproject_errors_carry_the_full_key_path(tmp_path: Path) -> None:
    """Key paths inside pyproject.toml start with tool.retrypolicy."""
    path = write(
        tmp_path, "[tool.retrypolicy.policies.batch]\nmax_attempts = 0\n", "pyproject.toml"
    )
    with pytest.raises(ConfigFileError) as info:
        load_policy(path)
    assert info.value.problems == [
        "tool.retrypolicy.policies.batch.max_attempts: expected integer >= 1, or false; "
        "found 0 (integer)"
    ]


def test_pyproject_without_the_table(tmp_path: Path) -> None:
    """A pyproject.toml without [tool.retrypolicy] says what it needs."""
    path = write(tmp_path, '[project]\nname = "svc"\n', "pyproject.toml")
    with pytest.raises(ConfigFileError, match=r"tool\.retrypolicy: expected .* found none"):
        load_policy(path)


def test_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    """A UTF-8 byte-order mark (some Windows editors write one) is not an error."""
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf[policies.p]\n")
    assert load_policy(path).name == "p"


# -- overriding an inherited rule --------------------------------------------------------

BATCH = '[policies.batch]\nextends = "eugpt"\n'
BATCH_RULE = "[[policies.batch.rules]]\n"


def same_match(a: rp.Rule, b: rp.Rule) -> bool:
    """Whether two rules match on the same statuses, code and failure."""
    return (a.status, a.code, a.failure) == (b.status, b.code, b.failure)


def eugpt_slot(
    status: int | None = None, code: str | None = None, failure: rp.Failure | None = None
) -> int:
    """The position in EU GPT's rules of the rule that decides this outcome."""
    rule = rp.EUGPT.classify(status, code, failure=failure).rule
    return next(i for i, r in enumerate(rp.EUGPT.rules) if r is rule)


def override(name: str, rule: str, outcome: dict[str, object], **changes: object) -> object:
    """A row: the rule written, an outcome EU GPT's overridden rule decides, what changes."""
    return pytest.param(rule, outcome, changes, id=name)


OVERRIDES = [
    override("429: only the count; backoff, advice, kind kept", "status = 429\nmax_retries = 3",
             {"status": 429}, max_retries=3),
    override("a code rule", 'code = "internal_error"\nmax_retries = 3',
             {"code": "internal_error"}, max_retries=3),
    override("a failure rule", 'failure = "connection"\nmax_retries = 9',
             {"failure": rp.Failure.CONNECTION}, max_retries=9),
    override("a status set in another order", "status = [504, 503, 502]\nretry = false",
             {"status": 503}, retry=False, max_retries=0),
    override("a status class", 'status = "5XX"\nmax_retries = 1', {"status": 501}, max_retries=1),
    override("explicit backoff keys win, the rule's others are kept",
             "status = 429\n[policies.batch.rules.backoff]\nmax_delay = 60\njitter = 'none'",
             {"status": 429}, backoff=rp.Backoff(initial=1.0, max_delay=60.0, jitter="none")),
    override("a backoff over a rule without one starts from the policy's",
             'code = "upstream_error"\n[policies.batch.rules.backoff]\ninitial = 3',
             {"code": "upstream_error"}, backoff=rp.Backoff(initial=3.0)),
    override('advice = "" clears the advice', 'status = 429\nadvice = ""', {"status": 429},
             advice=""),
    override("advice given replaces it", 'status = 401\nadvice = "Rotate the key."',
             {"status": 401}, advice="Rotate the key."),
    override("kind given replaces it", 'status = 429\nkind = "quota"', {"status": 429},
             kind="quota"),
    override("retry = true alone keeps the count", "status = 429\nretry = true", {"status": 429}),
    override("retry = true alone over a count of 0", "status = 404\nretry = true",
             {"status": 404}, retry=True, max_retries=2),
    override("retry = false alone retries nothing", "status = 429\nretry = false",
             {"status": 429}, retry=False, max_retries=0),
    override("the match alone changes nothing", "status = 429", {"status": 429}),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "outcome", "changes"), OVERRIDES)
def test_an_override_keeps_what_it_does_not_set(
    tmp_path: Path, rule: str, outcome: dict[str, Any], changes: dict[str, Any]
) -> None:
    """A rule with an inherited rule's match replaces it in its place, changing what it sets."""
    policy = load(tmp_path, f"{BATCH}{BATCH_RULE}{rule}\n")
    expected = list(rp.EUGPT.rules)
    slot = eugpt_slot(**outcome)
    expected[slot] = attrs.evolve(expected[slot], **changes)
    assert policy.rules == tuple(expected)
    assert load_policy(write(tmp_path, dump_policy(policy), "dumped.toml")) == policy


def test_the_429_count_alone_keeps_the_429_backoff_and_advice(tmp_path: Path) -> None:
    """The issue's case: max_retries = 3 on 429 keeps 1 s x2 capped at 20 s, and the advice."""
    policy = load(tmp_path, f"{BATCH}{BATCH_RULE}status = 429\nmax_retries = 3\n")
    c = policy.classify(429)
    assert (c.kind, c.retryable, c.max_retries) == (Kind.RATE_LIMITED, True, 3)
    assert c.advice == rp.EUGPT.classify(429).advice != ""
    assert c.rule is not None
    assert c.rule.backoff == rp.Backoff(initial=1.0, multiplier=2.0, max_delay=20.0)


def added(name: str, rule: str, expected: rp.Rule) -> object:
    """A row: a rule with a match no inherited rule has, and the rule it becomes."""
    return pytest.param(rule, expected, id=name)


NEW_MATCHES = [
    added("one status of a set", "status = 503\nmax_retries = 1",
          rp.Rule(kind=Kind.UNAVAILABLE, retry=True, max_retries=1, status=503)),
    added("a status with a code", 'status = 429\ncode = "quota"',
          rp.Rule(kind=Kind.RATE_LIMITED, retry=False, status=429, code="quota")),
    added("a code of its own", 'code = "quota"\nretry = true',
          rp.Rule(kind=Kind.STREAM_ERROR, retry=True, max_retries=2, code="quota")),
    added("a status no rule names", 'status = 418\nkind = "teapot"',
          rp.Rule(kind="teapot", retry=False, status=418)),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "expected"), NEW_MATCHES)
def test_a_new_match_is_added_before_the_inherited_rules(
    tmp_path: Path, rule: str, expected: rp.Rule
) -> None:
    """A rule with a match of its own comes first (as before overrides), inheriting nothing."""
    policy = load(tmp_path, f"{BATCH}{BATCH_RULE}{rule}\n")
    assert policy.rules == (expected, *rp.EUGPT.rules)
    assert load_policy(write(tmp_path, dump_policy(policy), "dumped.toml")) == policy


def test_new_rules_first_overrides_in_place(tmp_path: Path) -> None:
    """Mixed: new matches first in file order; overrides at their slots; a twin after its twin."""
    policy = load(
        tmp_path,
        f"{BATCH}{BATCH_RULE}status = 429\nmax_retries = 3\n"
        f'{BATCH_RULE}status = 418\nkind = "teapot"\n'
        f'{BATCH_RULE}failure = "timeout"\nmax_retries = 4\n'
        f"{BATCH_RULE}status = 429\nmax_retries = 5\n"
        f'{BATCH_RULE}code = "quota"\n',
    )
    rules = list(rp.EUGPT.rules)
    t, r429 = eugpt_slot(failure=rp.Failure.TIMEOUT), eugpt_slot(429)
    rules[t] = attrs.evolve(rules[t], max_retries=4)
    rules[r429 : r429 + 1] = [attrs.evolve(rules[r429], max_retries=n) for n in (3, 5)]
    teapot = rp.Rule(kind="teapot", retry=False, status=418)
    quota = rp.Rule(kind=Kind.STREAM_ERROR, retry=False, code="quota")
    assert policy.rules == (teapot, quota, *rules)
    assert policy.classify(429).max_retries == 3  # the first of the twins matches first


STACKED = """
[policies.interactive]
max_attempts = 5
[[policies.interactive.rules]]
status = 429
max_retries = 3

[policies.batch]
extends = "interactive"
[[policies.batch.rules]]
status = 429
advice = "Slow the batch down."
[policies.batch.rules.backoff]
max_delay = 60
"""


def test_overrides_stack(tmp_path: Path) -> None:
    """A policy extending an override inherits it, and may override it again."""
    policy = load(tmp_path, STACKED, "batch")
    slot = eugpt_slot(429)
    assert len(policy.rules) == len(rp.EUGPT.rules)
    assert policy.rules[slot] == attrs.evolve(
        rp.EUGPT.rules[slot],
        max_retries=3,
        advice="Slow the batch down.",
        backoff=rp.Backoff(initial=1.0, max_delay=60.0),
    )


def test_sources_say_where_each_value_was_written(tmp_path: Path) -> None:
    """load_policy_with_sources: the policy load_policy gives, and the table behind each value."""
    path = write(tmp_path, STACKED)
    policy, sources = load_policy_with_sources(path, "batch")
    assert policy == load_policy(path, "batch")
    assert (sources.policy, sources.parent) == ("policies.batch", "policies.interactive")
    assert len(sources.rules) == len(policy.rules)
    eugpt = Origin("eugpt", "eugpt")
    parent = Origin("policies.interactive", "policies.interactive.rules[0]")
    own = Origin("policies.batch", "policies.batch.rules[0]")
    rule = sources.rules[eugpt_slot(429)]
    assert (rule.written, rule.overrides) == (own, parent)
    assert dict(rule.values) == {
        "kind": eugpt,
        "retry": parent,
        "max_retries": parent,
        "advice": own,
        "backoff.initial": eugpt,
        "backoff.multiplier": eugpt,
        "backoff.max_delay": Origin("policies.batch", "policies.batch.rules[0].backoff"),
        "backoff.jitter": eugpt,
        "backoff.max_retry_after": eugpt,
    }
    assert sources.rules[0] == RuleSources(eugpt, None, dict.fromkeys(RULE_VALUES, eugpt))
    assert sources.values["max_attempts"] == Origin("policies.interactive", "policies.interactive")
    assert sources.values["deadline"] == eugpt
    _, alone = load_policy_with_sources(write(tmp_path, "[policies.p]\nextends = false\n"))
    assert alone.parent is None
    assert set(alone.values.values()) == {DEFAULT}


def test_sources_are_not_part_of_the_policy(tmp_path: Path) -> None:
    """Equal policies are equal whatever they inherit from: the dump of an override loads equal."""
    policy, sources = load_policy_with_sources(write(tmp_path, STACKED), "batch")
    again, again_sources = load_policy_with_sources(
        write(tmp_path, dump_policy(policy), "dumped.toml")
    )
    assert again == policy
    assert again_sources != sources


# -- errors ----------------------------------------------------------------------------

P = "[policies.p]\n"
R = "[[policies.p.rules]]\n"
B = "[policies.p.backoff]\n"


def row(name: str, text: str, path: str, *says: str) -> object:
    """One row of the error table: the file, the key path named, and what the problem says."""
    return pytest.param(text, path, says, id=name)


ERRORS = [
    row("unknown policy key", P + "max_atempts = 3", "policies.p.max_atempts",
        "unknown key; expected one of: extends, max_attempts", 'did you mean "max_attempts"?'),
    row("unknown backoff key", B + "jiter = 'full'", "policies.p.backoff.jiter",
        "unknown key; expected one of: initial, multiplier", 'did you mean "jitter"?'),
    row("unknown rule key", R + "stauts = 503", "policies.p.rules[0].stauts",
        "unknown key; expected one of: status, code", 'did you mean "status"?'),
    row("unknown top-level key", "[policy.p]\n", "policy",
        "unknown key; expected one of: policies", 'did you mean "policies"?'),
    row("top-level table", "[batch]\nmax_attempts = 1\n", "batch",
        "unknown key", "did you mean [policies.batch]?"),
    row("tool outside pyproject", "[tool.retrypolicy.policies.p]\n", "tool",
        "unknown key", "read only from a file named pyproject.toml"),
    row("bool is not an int", P + "max_attempts = true", "policies.p.max_attempts",
        "expected integer >= 1, or false", "found true (boolean)"),
    row("bool is not a number", B + "initial = true", "policies.p.backoff.initial",
        "expected number >= 0 (seconds)", "found true (boolean)"),
    row("bool max_retries", R + "status = 503\nmax_retries = true",
        "policies.p.rules[0].max_retries", "expected integer >= 0", "found true (boolean)"),
    row("bool status", R + "status = true", "policies.p.rules[0].status",
        'expected integer 100-599, a class like "5xx", or an array of these',
        "found true (boolean)"),
    row("float is not whole", R + "status = 503\nmax_retries = 2.0",
        "policies.p.rules[0].max_retries", "expected integer >= 0", "found 2.0 (float)"),
    row("string is not a number", B + 'max_delay = "8"', "policies.p.backoff.max_delay",
        "expected number >= 0 (seconds)", 'found "8" (string)'),
    row("negative delay", B + "initial = -1.0", "policies.p.backoff.initial",
        "expected number >= 0 (seconds)", "found -1.0 (float)"),
    row("negative max_retry_after", B + "max_retry_after = -5",
        "policies.p.backoff.max_retry_after", "expected number >= 0", "found -5 (integer)"),
    row("infinite delay", B + "max_delay = inf", "policies.p.backoff.max_delay",
        "expected number >= 0 (seconds)", "found inf (float)"),
    row("shrinking multiplier", B + "multiplier = 0.5", "policies.p.backoff.multiplier",
        "expected number >= 1", "found 0.5 (float)"),
    row("unknown jitter", B + 'jitter = "sometimes"', "policies.p.backoff.jitter",
        'expected "full", "equal", "decorrelated" or "none"', 'found "sometimes" (string)'),
    row("misspelt jitter", B + 'jitter = "ful"', "policies.p.backoff.jitter",
        'found "ful" (string); did you mean "full"?'),
    row("status out of range", R + "status = 700", "policies.p.rules[0].status",
        "expected integer 100-599", "found 700 (integer)"),
    row("status item out of range", R + "status = [503, 99]", "policies.p.rules[0].status[1]",
        "expected integer 100-599", "found 99 (integer)"),
    row("nested status array", R + "status = [[503]]", "policies.p.rules[0].status[0]",
        "expected integer 100-599", "found [503] (array)"),
    row("bad status class", R + 'status = "6xx"', "policies.p.rules[0].status",
        'expected integer 100-599, a class like "5xx"', 'found "6xx" (string)'),
    row("empty status list", R + "status = []", "policies.p.rules[0].status",
        "expected integer 100-599", "found [] (array)"),
    row("max_attempts 0", P + "max_attempts = 0", "policies.p.max_attempts",
        "expected integer >= 1, or false", "found 0 (integer)"),
    row("deadline 0", P + "deadline = 0", "policies.p.deadline",
        "expected number > 0 (seconds), or false", "found 0 (integer)"),
    row("deadline true", P + "deadline = true", "policies.p.deadline",
        "expected number > 0 (seconds), or false", "found true (boolean)"),
    row("deadline nan", P + "deadline = nan", "policies.p.deadline",
        "expected number > 0 (seconds), or false", "found nan (float)"),
    row("negative max_retries", R + "status = 503\nmax_retries = -1",
        "policies.p.rules[0].max_retries", "expected integer >= 0", "found -1 (integer)"),
    row("unknown failure", R + 'failure = "conection"', "policies.p.rules[0].failure",
        'expected "connection", "timeout", "incomplete_stream" or "stream_error"',
        'found "conection" (string); did you mean "connection"?'),
    row("empty code", R + 'code = ""', "policies.p.rules[0].code",
        'expected non-empty string; "*" for any code', 'found "" (string)'),
    row("empty kind", R + 'status = 503\nkind = ""', "policies.p.rules[0].kind",
        "expected non-empty string", 'found "" (string)'),
    row("retry not a bool", R + 'status = 503\nretry = "yes"', "policies.p.rules[0].retry",
        "expected boolean", 'found "yes" (string)'),
    row("advice not a string", R + "status = 503\nadvice = 3", "policies.p.rules[0].advice",
        "expected string", "found 3 (integer)"),
    row("rule matches nothing", R + "retry = true", "policies.p.rules[0]",
        "expected at least one of status, code, failure"),
    row("rules as a table", "[policies.p.rules]\nstatus = 503\n", "policies.p.rules",
        "expected an array of tables", "found a table",
        "write [[policies.p.rules]], not [policies.p.rules]"),
    row("rule not a table", P + "rules = [1]", "policies.p.rules[0]",
        "expected a table", "found 1 (integer)"),
    row("backoff not a table", P + "backoff = 3", "policies.p.backoff",
        "expected a table", "found 3 (integer)"),
    row("rule backoff", R + "status = 503\n[policies.p.rules.backoff]\nmultiplier = 0",
        "policies.p.rules[0].backoff.multiplier", "expected number >= 1", "found 0 (integer)"),
    row("policy not a table", "[policies]\np = 3\n", "policies.p",
        "expected a table", "found 3 (integer)"),
    row("no policies", "# nothing\n", "policies",
        "expected at least one [policies.<name>] table", "found none"),
    row("empty policies", "[policies]\n", "policies",
        "expected at least one [policies.<name>] table", "found a table"),
    row("empty policy name", '[policies.""]\n', 'policies.""',
        "expected a non-empty policy name", 'found ""'),
    row("quoted policy name", '[policies."a.b"]\nmax_attempts = 0', 'policies."a.b".max_attempts',
        "expected integer >= 1", "found 0 (integer)"),
    row("unknown parent", P + 'extends = "eugtp"', "policies.p.extends",
        "expected a built-in profile or a policy of this file (eugpt, http), or false",
        'found "eugtp" (string); did you mean "eugpt"?'),
    row("extends itself", P + 'extends = "p"', "policies.p.extends",
        "expected a built-in profile", 'found "p" (string); a policy cannot extend itself'),
    row("extends true", P + "extends = true", "policies.p.extends",
        "expected string, or false", "found true (boolean)"),
    row("extends empty", P + 'extends = ""', "policies.p.extends",
        "expected string, or false", 'found "" (string)'),
    row("extends cycle", '[policies.b]\nextends = "a"\n[policies.a]\nextends = "b"\n',
        "policies.a.extends",
        "expected a chain of policies ending in a built-in profile or extends = false",
        "found a cycle a -> b -> a"),
    row("broken TOML", "[policies.p\nmax_attempts = 3\n", "",
        "invalid TOML: Expected ']' at the end of a table declaration",
        "(at line 1, column 12)"),
    row("huge integer", B + "initial = 1" + "0" * 400, "policies.p.backoff.initial",
        "expected number >= 0 (seconds)", "found 1000000000", "… (integer)"),
    row("integer beyond Python's digit limit", P + "max_attempts = 1" + "0" * 5000, "",
        "invalid TOML: "),
    row("nested too deeply", P + "x = " + "[" * 100_000 + "]" * 100_000, "",
        "invalid TOML: "),
    row("duplicate key", P + "max_attempts = 3\nmax_attempts = 4\n", "",
        "invalid TOML: Cannot overwrite a value"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "path", "says"), ERRORS)
def test_error_messages(tmp_path: Path, text: str, path: str, says: tuple[str, ...]) -> None:
    """Each kind of bad input: a ConfigError naming the file, the key path, expected and found."""
    e = error(tmp_path, text, profile="p" if "[policies.p" in text else None)
    assert isinstance(e, rp.ConfigError)
    assert isinstance(e, ValueError)
    assert e.path == tmp_path / "policy.toml"
    assert str(e).startswith(f"{e.path}: ")
    prefix = f"{path}: " if path else ""
    matching = [p for p in e.problems if p.startswith(prefix) and all(s in p for s in says)]
    assert matching, e.problems
    assert all(p in str(e) for p in e.problems)
    assert not any(p.rstrip().endswith((":", ";", ",")) for p in e.problems)  # nothing cut off
    # re-worded here: not an attrs traceback, and not chained to one
    assert e.__cause__ is None
    assert e.__context__ is None


def test_one_cycle_is_reported_once(tmp_path: Path) -> None:
    """A cycle is one problem, however many policies are on it or hang off it."""
    e = error(
        tmp_path,
        '[policies.a]\nextends = "b"\n[policies.b]\nextends = "c"\n[policies.c]\nextends = "a"\n'
        '[policies.d]\nextends = "a"\n',
        "d",
    )
    assert e.problems == [
        "policies.a.extends: expected a chain of policies ending in a built-in profile or "
        "extends = false; found a cycle a -> b -> c -> a"
    ]


def test_every_problem_in_one_message(tmp_path: Path) -> None:
    """Problems are collected across the whole file, not reported one at a time."""
    e = error(
        tmp_path,
        "[policies.p]\nmax_atempts = 3\ndeadline = -1\n"
        "[policies.p.backoff]\njitter = 'sometimes'\n"
        "[[policies.p.rules]]\nstatus = 700\n[[policies.p.rules]]\ncode = 1\n"
        "[policies.unused]\nmax_attempts = 0\n",
        "p",
    )
    assert len(e.problems) == 6
    assert str(e).splitlines()[0] == f"{e.path}: 6 problems:"
    for key in [
        "policies.p.max_atempts",
        "policies.p.deadline",
        "policies.p.backoff.jitter",
        "policies.p.rules[0].status",
        "policies.p.rules[1].code",
        "policies.unused.max_attempts",
    ]:
        assert any(p.startswith(key + ":") for p in e.problems), key


def test_problems_of_a_parent_do_not_cascade(tmp_path: Path) -> None:
    """A child of a broken policy adds no problem of its own: the parent's is the cause."""
    e = error(tmp_path, '[policies.a]\nmax_attempts = 0\n[policies.b]\nextends = "a"\n', "b")
    assert e.problems == [
        "policies.a.max_attempts: expected integer >= 1, or false; found 0 (integer)"
    ]


def test_the_documented_error_example(tmp_path: Path) -> None:
    """docs/configuration.md shows problems exactly as they are worded."""
    block = re.search(r"```text\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert block is not None
    documented = [line[4:] for line in block.group(1).splitlines() if line.startswith("  - ")]
    e = error(
        tmp_path,
        "[policies.batch]\nmax_atempts = 8\n[policies.batch.backoff]\njitter = 'sometimes'\n"
        "[[policies.batch.rules]]\nstatus = 700\n"
        '[policies.a]\nextends = "b"\n[policies.b]\nextends = "a"\n',
        "batch",
    )
    assert e.problems == documented


def test_file_not_found(tmp_path: Path) -> None:
    """A missing file is a ConfigError naming it."""
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigFileError) as info:
        load_policy(path)
    assert info.value.path == path
    assert info.value.problems == [
        "cannot read the policy file: expected an existing file; found none"
    ]
    assert str(info.value).startswith(str(path))


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory is reported as unreadable, not as a traceback."""
    with pytest.raises(ConfigFileError, match="cannot read the policy file: expected a readable"):
        load_policy(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 names the byte and its line."""
    path = tmp_path / "latin1.toml"
    path.write_bytes('[policies.p]\nadvice = "café"\n'.encode("latin-1"))
    with pytest.raises(ConfigFileError) as info:
        load_policy(path)
    assert info.value.problems == [
        "cannot read the policy file: expected UTF-8 text (TOML); found byte 0xe9 on line 2"
    ]


def test_error_pickles(tmp_path: Path) -> None:
    """The error survives pickling (multiprocessing workers) with path and problems."""
    e = error(tmp_path, "[policies.p]\nmax_attempts = 0\n")
    again = pickle.loads(pickle.dumps(e))  # noqa: S301 - our own object
    assert (again.path, again.problems, str(again)) == (e.path, e.problems, str(e))


# -- writing -----------------------------------------------------------------------------

EVERY_FEATURE = rp.Policy(
    name="every feature.v2",
    rules=(
        rp.Rule(
            kind="custom_label",
            retry=True,
            max_retries=4,
            status=[502, "5xx", "4xx", 429],
            code="busy",
            advice='He said "don\'t" \\ then\ttabbed,\nnew line, \x01 control, émoji ✓ 🎉',
            backoff=rp.Backoff(initial=0.1, multiplier=1.5, max_delay=2, jitter="decorrelated"),
        ),
        rp.Rule(kind=Kind.STREAM_ERROR, retry=False, max_retries=3, code="*"),
        rp.Rule(kind=Kind.TIMEOUT, retry=True, max_retries=0, failure="timeout"),
        rp.Rule(kind="teapot", retry=False, status=418, failure="incomplete_stream"),
    ),
    backoff=rp.Backoff(initial=1e-05, multiplier=1, max_delay=1e16, jitter="none"),
    max_attempts=3,
    deadline=12.5,
)


@pytest.mark.parametrize("policy", [rp.EUGPT, rp.HTTP, EVERY_FEATURE], ids=lambda p: p.name)
def test_round_trip(tmp_path: Path, policy: rp.Policy) -> None:
    """dump_policy writes a file that load_policy reads back to an equal policy."""
    path = write(tmp_path, dump_policy(policy))
    again = load_policy(path)
    assert again == policy
    assert again.name == policy.name
    assert [r.advice for r in again.rules] == [r.advice for r in policy.rules]


def test_round_trip_of_a_loaded_policy(tmp_path: Path) -> None:
    """A policy loaded with inheritance dumps to a file that needs no inheritance."""
    policy = load(tmp_path, CONTRACT)
    text = dump_policy(policy)
    assert "extends = false" in text
    assert load_policy(write(tmp_path, text, "dumped.toml")) == policy


def test_dump_is_self_contained(tmp_path: Path) -> None:
    """The dump says extends = false and writes unset limits as false."""
    text = dump_policy(rp.HTTP.evolve(max_attempts=None))
    data = tomllib.loads(text)["policies"]["http"]
    assert (data["extends"], data["max_attempts"], data["deadline"]) == (False, False, False)
    assert len(data["rules"]) == len(rp.HTTP.rules)


def test_dump_uses_only_schema_keys() -> None:
    """Everything dump_policy writes is a key the reader knows."""
    data = tomllib.loads(dump_policy(EVERY_FEATURE))["policies"][EVERY_FEATURE.name]
    names = {s: {k.name for k in keys} for s, keys in SCHEMA.items()}
    assert set(data) <= names["policy"]
    assert set(data["backoff"]) == names["backoff"]
    for rule in data["rules"]:
        assert set(rule) <= names["rule"]
        assert set(rule.get("backoff", names["backoff"])) == names["backoff"]


def test_dump_refuses_an_empty_name() -> None:
    """A nameless policy has no [policies.<name>] table to go in."""
    with pytest.raises(rp.ConfigError, match="non-empty name"):
        dump_policy(rp.EUGPT.evolve(name=""))


@given(st.text())
def test_toml_strings_round_trip(text: str) -> None:
    """The string writer escapes quotes, backslashes and control characters correctly."""
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


@given(backoff=backoffs, max_attempts=st.none() | st.integers(1, 100))
def test_backoffs_round_trip(
    tmp_path_factory: pytest.TempPathFactory, backoff: rp.Backoff, max_attempts: int | None
) -> None:
    """Any valid backoff and limit survives a round trip."""
    policy = rp.HTTP.evolve(backoff=backoff, max_attempts=max_attempts)
    path = write(tmp_path_factory.mktemp("rt"), dump_policy(policy))
    assert load_policy(path) == policy


# -- the schema and the docs ---------------------------------------------------------------


def test_schema_keys_are_the_cores_fields() -> None:
    """Every documented key is read: a sub-table, extends, or a field the core validates."""
    assert set(SCHEMA) == set(_SUBTABLES)
    for section, keys in SCHEMA.items():
        names = [k.name for k in keys]
        assert sorted(names) == sorted(
            [*value_keys(section), *_SUBTABLES[section], *_OWN.get(section, ())]
        )
        if value_keys(section):
            fields = attrs.fields_dict(type(_PROBES[section]))
            assert set(value_keys(section)) <= set(fields), section


def test_a_quoted_status_reads_as_rule_status_does(tmp_path: Path) -> None:
    """status = "503" in a file is what Rule(status="503") is in code: both accept it."""
    rule = load(tmp_path, R + 'status = "503"\nkind = "busy"\n').rules[0]
    assert rule == rp.Rule(kind="busy", retry=False, status="503")
    assert rule.status == rp.Rule(kind="busy", retry=False, status=503).status


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("kind", 3),
        ("kind", ""),
        ("code", ""),
        ("code", 1),
        ("retry", "yes"),
        ("advice", 3),
        ("max_retries", True),
        ("status", "503x"),
        ("failure", "conection"),
    ],
)
def test_the_core_refuses_what_the_file_may_not_say(key: str, value: object) -> None:
    """A value the loader reports is one Rule itself refuses: one validator for both."""
    with pytest.raises((TypeError, ValueError)):
        rp.Rule(**{"kind": "k", "retry": False, "status": 503, key: value})  # type: ignore[arg-type]


def test_load_policies_gives_every_policy_by_name(tmp_path: Path) -> None:
    """load_policies: the file's policies in name order; any problem raises for the file."""
    path = write(tmp_path, '[policies.b]\nextends = "http"\n[policies.a]\nmax_attempts = 2\n')
    assert list(load_policies(path)) == ["a", "b"]
    assert load_policies(path)["b"] == rp.HTTP.evolve(name="b")
    with pytest.raises(ConfigFileError, match="max_attempts"):
        load_policies(write(tmp_path, "[policies.a]\nmax_attempts = 0\n"))


def documented_tables() -> dict[str, list[list[str]]]:
    """The rows of each ``<!-- schema: X -->`` table in docs/configuration.md."""
    tables: dict[str, list[list[str]]] = {}
    section: str | None = None
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        if m := re.fullmatch(r"<!-- schema: (\w+) -->", line.strip()):
            section = m.group(1)
            tables[section] = []
        elif section is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0] != "key" and not set(cells[0]) <= {"-"}:
                tables[section].append(cells)
        elif section is not None and tables[section] and not line.strip():
            section = None
    return tables


def test_docs_document_the_schema() -> None:
    """docs/configuration.md's key tables are exactly the schema (paste the rows below)."""
    expected = {
        section: [[f"`{k.name}`", k.type, k.default, k.doc] for k in keys]
        for section, keys in SCHEMA.items()
    }
    rendered = "\n".join(
        f"<!-- schema: {s} -->\n" + "\n".join(f"| {' | '.join(r)} |" for r in rows)
        for s, rows in expected.items()
    )
    assert documented_tables() == expected, rendered


def test_docs_examples_load(tmp_path: Path) -> None:
    """Every TOML example in docs/configuration.md is a valid policy file."""
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 3
    for i, block in enumerate(blocks):
        name = "pyproject.toml" if "[tool.retrypolicy" in block else f"example{i}.toml"
        path = write(tmp_path, block, name)
        for profile in sorted(tomllib.loads(block).get("policies", {})) or [None]:
            assert isinstance(load_policy(path, profile), rp.Policy)


# -- the environment ------------------------------------------------------------------------

NO_503 = "[policies.strict]\n[[policies.strict.rules]]\nstatus = 503\nretry = false\n"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No RETRYPOLICY_* variable from the outside leaks into the test."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    return monkeypatch


class Resp:
    """A response-like object the decorator inspects by its status_code."""

    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_default_is_eugpt(env: pytest.MonkeyPatch) -> None:
    """Without the variables (or with them empty) the default is EU GPT."""
    assert default_policy() is rp.EUGPT
    env.setenv(CONFIG_ENV, "")
    env.setenv(PROFILE_ENV, "")
    assert default_policy() is rp.EUGPT


def test_config_env_sets_the_default(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RETRYPOLICY_CONFIG names the file of the default policy."""
    env.setenv(CONFIG_ENV, str(write(tmp_path, NO_503)))
    policy = default_policy()
    assert policy.name == "strict"
    assert not policy.classify(503).retryable


def test_profile_env_selects_a_policy(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """RETRYPOLICY_PROFILE picks one of the file's policies."""
    env.setenv(CONFIG_ENV, str(write(tmp_path, NO_503 + '[policies.other]\nextends = "http"\n')))
    env.setenv(PROFILE_ENV, "other")
    assert default_policy() == rp.HTTP.evolve(name="other")


def test_profile_env_alone_selects_a_builtin(env: pytest.MonkeyPatch) -> None:
    """RETRYPOLICY_PROFILE without a file selects a built-in profile; an unknown one is an error."""
    env.setenv(PROFILE_ENV, "http")
    assert default_policy() is rp.HTTP
    env.setenv(PROFILE_ENV, "htp")
    with pytest.raises(rp.ConfigError, match="RETRYPOLICY_PROFILE='htp': expected a built-in"):
        default_policy()


def test_retry_uses_the_config_env(
    env: pytest.MonkeyPatch, tmp_path: Path, instant: rp.testing.Instant
) -> None:
    """@rp.retry without a policy follows the file: a 503 it makes final is not retried."""
    calls: list[int] = []

    def fetch() -> Resp:
        calls.append(1)
        return Resp(503)

    assert rp.retry(fetch)().status_code == 503
    assert len(calls) > 1  # EU GPT retries a 503
    calls.clear()
    env.setenv(CONFIG_ENV, str(write(tmp_path, NO_503)))
    result = rp.retry(fetch)()
    assert result.status_code == 503
    assert len(calls) == 1
    assert rp.retry()(fetch)().status_code == 503
    assert len(calls) == 2


def test_a_config_env_of_several_policies_says_to_set_the_profile_env(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """RETRYPOLICY_CONFIG naming a file of several policies, without RETRYPOLICY_PROFILE:
    the error says to choose with the variable, not with ``profile=`` (an argument the
    default policy's user never passes)."""
    env.setenv(CONFIG_ENV, str(write(tmp_path, "[policies.a]\n[policies.b]\n")))
    with pytest.raises(ConfigFileError) as info:
        default_policy()
    assert info.value.problems == [
        "profile: expected one of the file's policies (a, b) with RETRYPOLICY_PROFILE, as "
        "the file defines several; found none"
    ]


def test_a_broken_config_env_raises(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A broken file is an error naming the variable, never a silent fall-back to EU GPT."""
    path = write(tmp_path, "[policies.p]\nmax_attempts = 0\n")
    env.setenv(CONFIG_ENV, str(path))
    with pytest.raises(ConfigFileError) as info:
        default_policy()
    assert str(info.value).startswith(f"{path} (named by RETRYPOLICY_CONFIG): ")
    assert info.value.problems == [
        "policies.p.max_attempts: expected integer >= 1, or false; found 0 (integer)"
    ]
    with pytest.raises(rp.ConfigError):
        rp.retry(lambda: None)


def test_a_missing_config_env_file_raises(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A variable naming no file is an error too; creating the file then works."""
    path = tmp_path / "later.toml"
    env.setenv(CONFIG_ENV, str(path))
    with pytest.raises(ConfigFileError, match="expected an existing file"):
        default_policy()
    write(tmp_path, NO_503, "later.toml")
    assert default_policy().name == "strict"


def test_config_env_expands_the_home_directory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A ~ in RETRYPOLICY_CONFIG is the home directory."""
    env.setenv("HOME", str(tmp_path))
    write(tmp_path, NO_503)
    env.setenv(CONFIG_ENV, "~/policy.toml")
    assert default_policy().name == "strict"


def test_config_env_is_cached_until_the_file_changes(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The file is read once per version; a rewrite with a new mtime is picked up."""
    path = write(tmp_path, "[policies.p]\nmax_attempts = 2\n")
    env.setenv(CONFIG_ENV, str(path))
    first = default_policy()
    assert default_policy() is first
    stat = path.stat()
    path.write_text("[policies.p]\nmax_attempts = 5\n", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    second = default_policy()
    assert (first.max_attempts, second.max_attempts) == (2, 5)
    assert default_policy() is second
    env.setenv(PROFILE_ENV, "p")  # another profile is another cache entry
    assert default_policy() == second
