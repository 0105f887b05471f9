"""Several cabinets' v2 pushes: each campaign's request carries its own cabinet's token."""

from __future__ import annotations

from ymsync.sandbox import CampaignConfig
from tests.support.stock_harness import sandbox_config


def test_v2_pushes_of_two_cabinets_each_carry_their_own_token(bench_for, tmp_path):
    bench = bench_for(sandbox_config(campaigns=(CampaignConfig(2001, 8, "FBS"), CampaignConfig(3001, 9, "FBS"))))
    bench.admin("businesses", [{"id": 8, "groups": True}, {"id": 9, "groups": True}])  # v2 stays theirs
    bench.admin("tokens", {"token": "tok-eight", "businesses": [8]})
    bench.admin("tokens", {"token": "tok-nine", "businesses": [9]})
    path = tmp_path / "cabinets.toml"
    path.write_text('[cabinets.eight]\nbusiness_id = 8\ncampaigns = [2001]\ntoken_env = "YM_TOKEN_EIGHT"\n'
                    '[cabinets.nine]\nbusiness_id = 9\ncampaigns = [3001]\ntoken_env = "YM_TOKEN_NINE"\n')
    bench.start_worker("two-cabinets", YM_CABINETS_FILE=str(path), YM_TOKEN_EIGHT="tok-eight",
                       YM_TOKEN_NINE="tok-nine", YM_API_KEY="")
    bench.push(2001, [(f"E-{i}", i) for i in range(50)])
    bench.push(3001, [(f"N-{i}", i + 1) for i in range(50)])
    bench.wait_latest(2001, 60)
    bench.wait_latest(3001, 60)
    statuses = bench.requests_by_status()
    assert set(statuses) == {200}, statuses  # a wrong token would have been a 403
    log = (tmp_path / "two-cabinets.log").read_text()
    assert "tok-eight" not in log and "tok-nine" not in log



def test_a_single_cabinet_never_sends_a_campaign_it_does_not_list(bench_for, tmp_path):
    """One cabinet listing 2001; values for 3001 (queued by a producer that had no cabinets file)
    halt locally: no request for 3001 ever leaves with cabinet eight's token. Before, one
    cabinet meant one client for every campaign and 3001 went out with tok-eight (a 403)."""
    from ymsync.store import keys
    from tests.support.processes import wait_for

    bench = bench_for(sandbox_config(campaigns=(CampaignConfig(2001, 8, "FBS"), CampaignConfig(3001, 9, "FBS"))))
    bench.admin("businesses", [{"id": 8, "groups": True}, {"id": 9, "groups": True}])
    bench.admin("tokens", {"token": "tok-eight", "businesses": [8]})
    path = tmp_path / "cabinets.toml"
    path.write_text('[cabinets.eight]\nbusiness_id = 8\ncampaigns = [2001]\ntoken_env = "YM_TOKEN_EIGHT"\n')
    bench.buffer.ingest(3001, [(f"N-{i}", i, None) for i in range(20)])
    bench.start_worker("one-cabinet", YM_CABINETS_FILE=str(path), YM_TOKEN_EIGHT="tok-eight", YM_API_KEY="")
    bench.push(2001, [(f"E-{i}", i) for i in range(20)])
    bench.wait_latest(2001, 60)
    wait_for(lambda: bench.redis.exists(keys.campaign_keys(3001)["halt"]), 30, "campaign 3001 to halt")
    # Nothing of 3001 reached the Market: sent with tok-eight it would have been a 403.
    assert {e["status"] for e in bench.log()} == {200}, bench.requests_by_status()
    assert bench.buffer.pending(3001) + bench.buffer.in_flight(3001) == 20  # the backlog is kept
