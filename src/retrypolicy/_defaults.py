"""The policy used when none is given: ``RETRYPOLICY_CONFIG`` if set, else EU GPT.

Deployments change retry behaviour without code changes by pointing
``RETRYPOLICY_CONFIG`` at a policy file (and ``RETRYPOLICY_PROFILE`` at one of
its policies). The decorator and the adapters ask for the default each time
they are built, so the file is read once per distinct (path, profile, file
version) and cached: editing the file takes effect for what is built next,
without a restart, and without re-parsing on every decoration.

A broken file raises :class:`~retrypolicy.ConfigError`. It never falls back to
EU GPT silently: a deployment that asked for its own policy must not run with
another one because of a typo.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Final

from ._config import ConfigFileError, load_policy_with_sources
from ._errors import ConfigError
from ._policy import Policy
from ._profiles import EUGPT, PROFILES

__all__ = ["CONFIG_ENV", "PROFILE_ENV", "default_policy"]

CONFIG_ENV: Final = "RETRYPOLICY_CONFIG"
"""Names the TOML file of the default policy (``~`` is expanded; relative to the cwd)."""
PROFILE_ENV: Final = "RETRYPOLICY_PROFILE"
"""Selects a policy of that file; without ``RETRYPOLICY_CONFIG``, a built-in profile."""

_CACHE_SIZE: Final = 16


def env_choice() -> tuple[Path | None, str | None]:
    """The file ``RETRYPOLICY_CONFIG`` names (``~`` expanded) and the profile
    ``RETRYPOLICY_PROFILE`` selects; empty variables count as unset."""
    raw = os.environ.get(CONFIG_ENV, "")
    return (Path(raw).expanduser() if raw else None), os.environ.get(PROFILE_ENV) or None


def default_policy() -> Policy:
    """The policy for a decorator or adapter built without one.

    Empty variables count as unset, as shells and ``.env`` files produce them.

    Raises:
        ConfigError: the file named by ``RETRYPOLICY_CONFIG`` is missing or
            wrong (the message says which variable named it), or
            ``RETRYPOLICY_PROFILE`` names no built-in profile.
    """
    config, profile = env_choice()
    if config is None:
        if profile is None:
            return EUGPT
        try:
            return PROFILES[profile]
        except KeyError:
            msg = (
                f"{PROFILE_ENV}={profile!r}: expected a built-in profile "
                f"({', '.join(PROFILES)}), or {CONFIG_ENV} naming a file that defines it"
            )
            raise ConfigError(msg) from None
    path = config.absolute()
    try:
        stat = path.stat()
        version: tuple[int, int, int] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    except OSError:
        version = (-1, -1, -1)  # loading reports why it cannot be read
    return _load(str(path), profile, version)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load(path: str, profile: str | None, version: tuple[int, int, int]) -> Policy:
    """Load once per file version (*version* is only part of the cache key).

    The size and inode join the mtime so that a rewrite within the file
    system's mtime granularity, or an atomic replace, is still noticed.
    Failures are not cached (``lru_cache`` never caches an exception).
    """
    del version
    try:
        # several policies in the file: chosen by the environment, not by an argument
        return load_policy_with_sources(path, profile, choose=PROFILE_ENV)[0]
    except ConfigFileError as e:
        origin = f"named by {CONFIG_ENV}" + (f", {PROFILE_ENV}={profile}" if profile else "")
        raise ConfigError.for_file(e.path or Path(path), e.problems, origin=origin) from None
