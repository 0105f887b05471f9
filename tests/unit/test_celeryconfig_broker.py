"""celeryconfig's queues and transport options follow the broker: quorum + confirms on RabbitMQ only."""

from __future__ import annotations

import celeryconfig


def test_rabbitmq_gets_quorum_queues_behind_topic_exchanges_and_publisher_confirms():
    assert celeryconfig.is_amqp("amqp://u:p@rabbitmq:5672/ymsync") and celeryconfig.is_amqp("amqps://h//")
    queues = {q.name: q for q in celeryconfig.build_queues(True)}
    assert set(queues) == {"stocks", "reports"}
    for name, queue in queues.items():
        assert queue.queue_arguments == {"x-queue-type": "quorum"}
        # topic: Celery's native delayed delivery (retry countdowns on quorum queues) needs it
        assert queue.exchange.type == "topic" and queue.routing_key == name
    assert celeryconfig.build_transport_options(True) == {"confirm_publish": True}


def test_redis_keeps_plain_queues_and_its_visibility_timeout():
    assert not celeryconfig.is_amqp("redis://127.0.0.1:6379/0")
    assert all(not q.queue_arguments for q in celeryconfig.build_queues(False))
    assert celeryconfig.build_transport_options(False) == {"visibility_timeout": 6 * 3600}
