"""The three kinds of 420 in one table (``errors.RATE_LIMIT_KINDS``): typed codes and messages to a
class, each naming its kind for logs and metrics."""

from __future__ import annotations

import pytest

from ymsync.engine.call_policy import Kind, classify
from ymsync.market.errors import (RATE_LIMIT_KINDS, ApiError, MarketActiveReportsLimit, MarketParallelLimitExceeded,
                                  MarketQuotaExceeded, error_for_status, rate_limit_kind)


@pytest.mark.parametrize("errors, cls", [
    ((ApiError("LIMIT_EXCEEDED", "Hit rate limit of 4 parallel requests for campaignId 5"),), MarketParallelLimitExceeded),
    ((ApiError("LIMIT_EXCEEDED", "Превышено ограничение на 4 параллельных запроса"),), MarketParallelLimitExceeded),
    ((ApiError("LIMIT_EXCEEDED", "Active reports limit exceeded"),), MarketActiveReportsLimit),
    ((ApiError("LIMIT_EXCEEDED", "Превышен лимит активных отчётов"),), MarketActiveReportsLimit),
    ((ApiError("REQUEST_LIMIT_EXCEEDED", ""),), MarketQuotaExceeded),
    ((ApiError("LIMIT_EXCEEDED", "Hit rate limit of '1' requests per '1m' for resource 'x'"),), MarketQuotaExceeded),
    ((ApiError("SOMETHING_NEW", "?"),), MarketQuotaExceeded),  # no row: a quota 420, Until decides
    ((), MarketQuotaExceeded),
    # Any error of the reply may name the kind.
    ((ApiError("OTHER", ""), ApiError("LIMIT_EXCEEDED", "Active reports limit exceeded")), MarketActiveReportsLimit),
])
def test_each_420_maps_to_one_kind(errors, cls):
    assert rate_limit_kind(errors) is cls and error_for_status(420, errors) is cls


def test_every_kind_has_a_row_and_names_itself_as_the_call_policy_does():
    assert {row[2] for row in RATE_LIMIT_KINDS} == {MarketParallelLimitExceeded, MarketActiveReportsLimit,
                                                     MarketQuotaExceeded}
    for cls, kind in ((MarketParallelLimitExceeded, Kind.PARALLEL), (MarketActiveReportsLimit, Kind.ACTIVE_REPORTS),
                      (MarketQuotaExceeded, Kind.QUOTA)):
        exc = cls("x", status=420)
        assert exc.kind == kind.value and classify(exc) is kind
