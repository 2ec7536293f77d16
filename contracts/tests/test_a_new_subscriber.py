"""What contracts/README.md shows a new subscriber doing, kept honest by running it.

A food-support NPO wants referrals for people with nothing to eat, and nothing else.
"""

import uuid

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker

from tsunagu_contracts import REFERRALS, NeedCategory, ReferralRequested, decode, encode


def build_food_bank_subscriber(broker: KafkaBroker, handled: list[ReferralRequested]) -> None:
    async def handle_food_referral(referral: ReferralRequested) -> None:
        handled.append(referral)

    subscriber = broker.subscriber(REFERRALS.name, group_id="food-bank-example")

    @subscriber(filter=lambda message: message.headers.get("ce_type") == ReferralRequested.type)
    async def on_referral_requested(message: KafkaMessage) -> None:
        envelope = decode(message.headers, message.body, expect=ReferralRequested)
        if envelope.data.need is NeedCategory.NO_FOOD:
            await handle_food_referral(envelope.data)

    @subscriber
    async def ignore_other_events(message: KafkaMessage) -> None:
        """Every other event on the topic is acknowledged and skipped."""


def a_referral(need: NeedCategory) -> ReferralRequested:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return ReferralRequested.model_validate({**example, "case_id": str(uuid.uuid4()), "need": need})


async def test_a_new_subscriber_gets_only_the_need_it_serves():
    broker = KafkaBroker()
    handled: list[ReferralRequested] = []
    build_food_bank_subscriber(broker, handled)
    food, housing = a_referral(NeedCategory.NO_FOOD), a_referral(NeedCategory.HOUSING)

    async with TestKafkaBroker(broker) as test_broker:
        for event in (food, housing):
            record = encode(event)
            await test_broker.publish(record.value, REFERRALS.name, key=record.key,
                                      headers={k: v.decode() for k, v in record.headers})

    assert handled == [food]
