"""A food bank (フードバンク) that hears of every referral for a person with nothing to eat (`no_food`)."""

import asyncio
import os

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.security import SASLScram512

from tsunagu_contracts import REFERRALS, NeedCategory, ReferralRequested, decode


async def prepare_food_parcel(referral: ReferralRequested) -> None:
    print(f"食料支援の紹介 / food referral {referral.referral_id} (case {referral.case_id})", flush=True)


def subscribe(broker: KafkaBroker, on_food_referral=prepare_food_parcel, namespace: str = "") -> None:
    subscriber = broker.subscriber(namespace + REFERRALS.name, group_id=namespace + "food-bank",
                                   auto_offset_reset="earliest")

    @subscriber(filter=lambda message: message.headers.get("ce_type") == ReferralRequested.type)
    async def on_referral_requested(message: KafkaMessage) -> None:
        referral = decode(message.headers, message.body, expect=ReferralRequested).data
        if referral.need is NeedCategory.NO_FOOD:
            await on_food_referral(referral)

    @subscriber
    async def ignore_other_events(message: KafkaMessage) -> None:
        """Every other event on the topic is acknowledged and skipped."""


def app() -> FastStream:
    password = os.environ.get("KAFKA_PASSWORD")
    broker = KafkaBroker(os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"), security=SASLScram512(
        os.environ.get("KAFKA_USERNAME", ""), password, use_ssl=False) if password else None)
    subscribe(broker)
    return FastStream(broker)


if __name__ == "__main__":
    asyncio.run(app().run())
