"""YM_REDIS_CLUSTER and its settings: a configuration that points Celery at the cluster is refused
in one line; replica acknowledgement is on by default with a cluster."""

from __future__ import annotations

import pytest

from ymsync.config.settings import SettingsError, load_settings

NODE = "redis://10.0.0.5:7000/0"
ELSEWHERE = {"CELERY_BROKER_URL": "amqp://ymsync@rabbit:5672/ymsync", "CELERY_RESULT_BACKEND": "redis://results:6379/0"}


def test_one_redis_by_default() -> None:
    state = load_settings({"REDIS_URL": NODE}).redis_state
    assert (state.cluster, state.ack_replicas) == (False, 0)


def test_a_cluster_acknowledges_after_one_replica_by_default() -> None:
    state = load_settings({"REDIS_URL": NODE, "YM_REDIS_CLUSTER": "1", **ELSEWHERE}).redis_state
    assert (state.cluster, state.ack_replicas, state.ack_timeout_ms, state.failover_s) == (True, 1, 500, 20.0)
    tuned = load_settings({"REDIS_URL": NODE, "YM_REDIS_CLUSTER": "yes", "YM_REDIS_ACK_REPLICAS": "2",
                           "YM_REDIS_ACK_TIMEOUT_MS": "1500", "YM_REDIS_FAILOVER_S": "8", **ELSEWHERE}).redis_state
    assert (tuned.ack_replicas, tuned.ack_timeout_ms, tuned.failover_s) == (2, 1500, 8.0)


@pytest.mark.parametrize("celery", [
    {},  # both default to REDIS_URL
    {"CELERY_RESULT_BACKEND": "redis://results:6379/0"},  # the broker defaults to the cluster
    {"CELERY_BROKER_URL": "amqp://rabbit//", "CELERY_RESULT_BACKEND": "redis://10.0.0.5:7000/3"},  # same node
])
def test_celery_pointed_at_the_cluster_is_refused_in_one_line(celery: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"REDIS_URL": NODE, "YM_REDIS_CLUSTER": "1", **celery})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("YM_REDIS_CLUSTER: CELERY_") and "elsewhere than the cluster" in message


@pytest.mark.parametrize("name,value", [("YM_REDIS_CLUSTER", "maybe"), ("YM_REDIS_ACK_REPLICAS", "-1"),
                                        ("YM_REDIS_ACK_TIMEOUT_MS", "0"), ("YM_REDIS_FAILOVER_S", "soon")])
def test_malformed_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({"REDIS_URL": NODE, "YM_REDIS_CLUSTER": "1", **ELSEWHERE, name: value})
