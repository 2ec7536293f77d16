"""The Python food bank example on the real broker: it hears of the referrals for people with
nothing to eat, and of nothing else on the referrals topic."""

import asyncio
import importlib.util
from pathlib import Path

from aiokafka import AIOKafkaProducer
from faststream import FastStream
from faststream.kafka import KafkaBroker
from faststream.security import SASLScram512

from tsunagu_contracts import REFERRALS, NeedCategory, ReferralRequested, encode, uuid7

spec = importlib.util.spec_from_file_location("food_bank", Path(__file__).parents[1] / "food_bank.py")
food_bank = importlib.util.module_from_spec(spec)
spec.loader.exec_module(food_bank)


def a_referral(case_id, need: NeedCategory) -> ReferralRequested:
    example = ReferralRequested.model_json_schema()["examples"][0]
    return ReferralRequested.model_validate({**example, "case_id": str(case_id), "referral_id": str(uuid7()),
                                             "need": need})


async def test_the_food_bank_hears_of_no_food_referrals_and_of_nothing_else(infrastructure, kafka_namespace):
    admin = infrastructure.kafka_admin
    broker = KafkaBroker(infrastructure.kafka_bootstrap,
                         security=SASLScram512(admin.username, admin.password, use_ssl=False) if admin else None)
    heard: asyncio.Queue[ReferralRequested] = asyncio.Queue()
    food_bank.subscribe(broker, heard.put, namespace=kafka_namespace)
    case_id = uuid7()  # one case: one partition, so the housing referral is read before the food one
    housing, food = a_referral(case_id, NeedCategory.HOUSING), a_referral(case_id, NeedCategory.NO_FOOD)

    app = FastStream(broker)
    await app.start()
    producer = AIOKafkaProducer(bootstrap_servers=infrastructure.kafka_bootstrap, **infrastructure.kafka_options)
    await producer.start()
    try:
        for referral in (housing, food):
            record = encode(referral)
            await producer.send_and_wait(kafka_namespace + REFERRALS.name, record.value, key=record.key,
                                         headers=record.headers)
        first = await asyncio.wait_for(heard.get(), 60)
    finally:
        await producer.stop()
        await app.stop()

    assert first == food
    assert heard.empty()
