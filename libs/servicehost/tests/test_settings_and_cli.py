"""The service host reads its settings from the environment and refuses to start without them, naming what is wrong."""

import pytest

from tsunagu_servicehost import Service, ServiceSettings, main
from tsunagu_servicehost.migrations import _async_url


def test_a_service_without_database_settings_exits_with_the_variable_it_needs(monkeypatch, tmp_path):
    monkeypatch.delenv("TSUNAGU_DATABASE_URL", raising=False)
    monkeypatch.setenv("TSUNAGU_HTTP_PORT", "8001")
    service = Service(name="example", title="例", migrations=tmp_path)

    with pytest.raises(SystemExit) as exit_:
        main(service, ["migrate"])

    assert "TSUNAGU_DATABASE_URL" in str(exit_.value.code)


def test_the_openapi_command_needs_no_infrastructure(capsys, tmp_path):
    main(Service(name="example", title="例のサービス", migrations=tmp_path), ["openapi"])
    assert '"title": "例のサービス"' in capsys.readouterr().out


@pytest.mark.parametrize("url", ["postgresql://u:p@h:5432/d", "postgres://u:p@h:5432/d"])
def test_migrations_use_the_asyncpg_driver(url):
    assert _async_url(url) == "postgresql+asyncpg://u:p@h:5432/d"


def test_a_comma_separated_kafka_bootstrap_list_is_one_server_per_entry(monkeypatch):
    monkeypatch.setenv("TSUNAGU_KAFKA_BOOTSTRAP", "host1:9092, host2:9093,host3:9094")
    settings = ServiceSettings(http_port=8001, database_url="postgresql://u:p@h/d")
    assert settings.kafka_bootstrap == ["host1:9092", "host2:9093", "host3:9094"]


def test_a_kafka_bootstrap_list_with_an_empty_entry_stops_the_service_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("TSUNAGU_KAFKA_BOOTSTRAP", "host1:9092,,host3:9094")
    monkeypatch.setenv("TSUNAGU_HTTP_PORT", "8001")
    monkeypatch.setenv("TSUNAGU_DATABASE_URL", "postgresql://u:secret-password@h/d")

    with pytest.raises(SystemExit) as exit_:
        main(Service(name="example", title="例", migrations=tmp_path), ["migrate"])

    message = str(exit_.value.code)
    assert "TSUNAGU_KAFKA_BOOTSTRAP" in message and "none of them empty" in message
    assert "secret-password" not in message


def test_a_service_without_its_kafka_user_stops_with_the_reason_before_it_connects(monkeypatch, tmp_path):
    monkeypatch.setenv("TSUNAGU_HTTP_PORT", "8001")
    monkeypatch.setenv("TSUNAGU_DATABASE_URL", "postgresql://u:secret-password@h/d")
    monkeypatch.setenv("TSUNAGU_KAFKA_USERNAME", "tsunagu-example")
    monkeypatch.delenv("TSUNAGU_KAFKA_PASSWORD", raising=False)

    with pytest.raises(SystemExit) as exit_:
        main(Service(name="example", title="例", migrations=tmp_path), ["serve"])

    message = str(exit_.value.code)
    assert "TSUNAGU_KAFKA_PASSWORD" in message and "secret-password" not in message


def test_a_services_kafka_clients_sign_in_as_its_own_scram_user():
    settings = ServiceSettings(http_port=8001, database_url="postgresql://u:p@h/d",
                               kafka_username="tsunagu-intake", kafka_password="its-password")

    assert settings.kafka_options == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                      "sasl_plain_username": "tsunagu-intake", "sasl_plain_password": "its-password"}
    assert "its-password" not in repr(settings) and "its-password" not in repr(settings.kafka_credentials)
