"""The service host refuses to start without its settings, and names what is missing."""

import pytest

from tsunagu_servicehost import Service, main
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
