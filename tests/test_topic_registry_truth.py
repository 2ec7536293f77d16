"""The topic registry says who consumes what; each service's real subscriptions must say the same,
so the registry (and the AsyncAPI document generated from it) never lists a consumer that
subscribes to nothing, nor misses one that does."""

import pytest

from tsunagu_contracts import EVENT_TOPICS, topics_consumed_by
from tsunagu_contracts.topics import SERVICES
from tsunagu_teststack.services import service_app


def subscribed_topics(name: str) -> set[str]:
    broker = service_app(name).state.runtime.broker
    return {getattr(topic, "name", topic)
            for subscriber in broker.subscribers for topic in subscriber.topics}


@pytest.mark.parametrize("name", SERVICES)
def test_a_service_subscribes_to_exactly_the_topics_the_registry_lists_it_on(name):
    assert subscribed_topics(name) == {t.name for t in topics_consumed_by(name)}


def test_every_event_topic_has_a_consumer():
    assert all(topic.consumers for topic in EVENT_TOPICS)
