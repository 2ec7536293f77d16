"""A scanner for personal data where none may be: Kafka records (keys, headers, values), the log
lines the service processes write, and the spans they export.

It looks for the sample people the tests register (tsunagu_teststack.people) in the forms a leak
takes: the name with and without its space, the given name, the kana in hiragana and katakana, the
birth date as ISO, compact, slashed, Japanese and Japanese-era dates, the phone number with and
without hyphens, the address with and without spaces. A hit names where it was found and which item
of which person, never the value itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tsunagu_teststack.people import SAMPLE_PEOPLE, SamplePerson


def _katakana(text: str) -> str:
    return "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in text)


def _forms(person: SamplePerson) -> list[tuple[str, str]]:
    """(what, text) for each form of each item. The family name alone is left out: in Zama it is also
    the city's name (座間市), which the system rightly writes everywhere."""
    d = person.birth_date
    given = person.name.split()[-1]
    kana = person.name_kana
    forms = [("name", person.name), ("name", person.name.replace(" ", "")), ("name", person.name.replace(" ", "\u3000")),
             ("given name", given),
             ("kana", kana), ("kana", kana.replace(" ", "")), ("kana", _katakana(kana)),
             ("kana", _katakana(kana).replace(" ", "")),
             ("birth date", d.isoformat()), ("birth date", d.strftime("%Y%m%d")), ("birth date", d.strftime("%Y/%m/%d")),
             ("birth date", f"{d.year}/{d.month}/{d.day}"), ("birth date", f"{d.year}年{d.month}月{d.day}日"),
             ("birth date", f"{d.day:02d}/{d.month:02d}/{d.year}"), ("birth date", f"{d.month:02d}/{d.day:02d}/{d.year}")]
    if 1926 <= d.year <= 1988:
        forms.append(("birth date", f"昭和{d.year - 1925}年{d.month}月{d.day}日"))
    forms += [("phone", person.phone), ("phone", person.phone.replace("-", "")),
              ("address", person.address), ("address", person.address.replace(" ", ""))]
    # Also as JSON writes them with ensure_ascii (\uXXXX): a log line or record value may be escaped.
    forms += [(what, json.dumps(text)[1:-1]) for what, text in forms if not text.isascii()]
    return sorted(set(forms))


@dataclass(frozen=True)
class Hit:
    where: str
    what: str
    person: int

    def __str__(self) -> str:
        return f"{self.where}: the {self.what} of sample person {self.person + 1}"


class PersonalDataScanner:
    def __init__(self, people: Iterable[SamplePerson] = SAMPLE_PEOPLE):
        self.forms = [(i, what, text) for i, person in enumerate(people) for what, text in _forms(person)]

    def scan(self, where: str, content: str | bytes | None) -> list[Hit]:
        if content is None:
            return []
        text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
        return sorted({Hit(where, what, i) for i, what, form in self.forms if form in text},
                      key=lambda h: (h.where, h.what))

    def scan_log(self, path: Path) -> list[Hit]:
        if not path.exists():
            return []
        return [hit for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
                for hit in self.scan(f"{path.name} line {n}", line)]

    def scan_record(self, record) -> list[Hit]:
        """An aiokafka ConsumerRecord (or anything with topic, partition, offset, key, headers, value)."""
        at = f"Kafka {record.topic}[{record.partition}]@{record.offset}"
        hits = self.scan(f"{at} key", record.key) + self.scan(f"{at} value", record.value)
        for name, value in record.headers or ():
            hits += self.scan(f"{at} header name", name) + self.scan(f"{at} header {name}", value)
        return hits

    def scan_spans(self, spans: Iterable[dict]) -> list[Hit]:
        """Spans as {"service", "name", "attributes": {key: value}} (decoded OTLP exports)."""
        hits = []
        for span in spans:
            at = f"span {span['service']}/{span['name'][:60]}"
            hits += self.scan(f"{at} name", span["name"])
            for key, value in span["attributes"].items():
                hits += self.scan(f"{at} attribute key", key) + self.scan(f"{at} attribute {key}", str(value))
            for event in span.get("events", ()):
                hits += self.scan(f"{at} event", str(event))
        return hits


def otlp_spans(bodies: Iterable[bytes]) -> list[dict]:
    """The spans of OTLP/HTTP protobuf export requests, with their events."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans = []
    for body in bodies:
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            service = next((a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), "?")
            for scope in resource.scope_spans:
                for span in scope.spans:
                    spans.append({"service": service, "name": span.name,
                                  "attributes": {a.key: str(a.value) for a in span.attributes},
                                  "events": [f"{e.name} {[str(a.value) for a in e.attributes]}" for e in span.events]})
    return spans


async def namespace_records(bootstrap: str, namespace: str, *, options: dict | None = None,
                            deadline_s: float = 60.0) -> list:
    """Every record on the topics of one test's namespace, from the beginning to the end offsets read
    at the start, as the client `options` (the broker's credentials) may. Raises when they cannot all be read within `deadline_s`: a scan that silently read
    less would pass without looking."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    # The admin client's metadata names every topic and its partitions; a consumer's cached metadata
    # knows only the topics it has already been told about.
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(options or {}))
    await admin.start()
    try:
        topics = [t for t in await admin.list_topics() if t.startswith(namespace)]
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    partitions = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **(options or {}))
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        pending = {tp for tp in partitions if ends[tp] > 0}
        records = []
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s
        while pending:
            if loop.time() > give_up:
                raise TimeoutError(f"the personal-data scan could not read {sorted(map(str, pending))} "
                                   f"to its end within {deadline_s:.0f} s")
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, got in batch.items():
                records += [r for r in got if r.offset < ends[tp]]
                if got and got[-1].offset + 1 >= ends[tp]:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


def report(hits: list[Hit], limit: int = 30) -> str:
    shown = "\n".join(f"  {hit}" for hit in hits[:limit])
    more = f"\n  … and {len(hits) - limit} more" if len(hits) > limit else ""
    return f"personal data of the tests' sample people found where none may be:\n{shown}{more}"
