"""Shared fixtures. Tests that need ``../shared/data`` skip cleanly when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("GSSCREEN_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets one private cache folder, so tests never touch the user's cache.

    Converted weights (e.g. FaceNet) are expensive to rebuild, so the folder is shared by the whole session.
    """
    monkeypatch.setenv("GSSCREEN_CACHE", str(_session_cache(tmp_path_factory)))


_CACHE: dict[str, Path] = {}


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if "p" not in _CACHE:
        _CACHE["p"] = factory.mktemp("gsscreen-cache")
    return _CACHE["p"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is not there (a user's machine will not have it)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"development data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut():
    from gsscreen.examples import example_image

    return example_image("astronaut")


@pytest.fixture(scope="session")
def grace_hopper():
    from gsscreen.examples import example_image

    return example_image("grace_hopper")


# Mutation testing (scripts/mutate.py) wants every run of a property test to draw the same examples, so that a
# mutant is killed or not for a reason, not by the luck of the draw.
if os.environ.get("HYPOTHESIS_PROFILE") == "mutate":
    from hypothesis import settings as _hyp_settings

    _hyp_settings.register_profile("mutate", derandomize=True, deadline=None)
    _hyp_settings.load_profile("mutate")
