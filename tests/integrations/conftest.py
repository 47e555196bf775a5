"""Fixtures of the integration tests: the saved scorers (fitted once per session) and each in turn."""
from __future__ import annotations

import pytest
from integration_cases import FITS, SavedCase, fit_cases


@pytest.fixture(scope="session")
def saved_scorers(tmp_path_factory, tiny_bert_dir) -> dict[str, SavedCase]:
    """An RDS+ and a DSIR scorer saved by tiny runs on one generated pool."""
    return fit_cases(tmp_path_factory.mktemp("saved"), tiny_bert_dir)


@pytest.fixture(params=sorted(FITS))
def case(request, saved_scorers) -> SavedCase:
    """Each saved scorer in turn."""
    return saved_scorers[request.param]
