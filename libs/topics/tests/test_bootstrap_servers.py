"""A bootstrap list is read the way people write it, and a list with a hole in it is refused."""

import sys

import pytest

from tsunagu_topics import bootstrap_servers
from tsunagu_topics.create import main


def test_a_comma_separated_list_becomes_one_entry_per_server_without_spaces():
    assert bootstrap_servers("host1:9092, host2:9093 ,host3:9094") == ["host1:9092", "host2:9093", "host3:9094"]


def test_one_server_is_a_list_of_one():
    assert bootstrap_servers("127.0.0.1:9092") == ["127.0.0.1:9092"]


def test_a_list_already_split_is_kept():
    assert bootstrap_servers(["host1:9092", " host2:9093"]) == ["host1:9092", "host2:9093"]


@pytest.mark.parametrize("value", ["", " ", "host1:9092,,host2:9093", "host1:9092,", ",host1:9092", []])
def test_an_empty_entry_is_refused_with_the_list_it_came_in(value):
    with pytest.raises(ValueError, match="none of them empty") as refused:
        bootstrap_servers(value)
    assert repr(value) in str(refused.value)


def test_the_topics_command_refuses_an_empty_entry_before_connecting(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tsunagu_topics", "--bootstrap", "host1:9092,,host2:9093"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2
    assert "none of them empty" in capsys.readouterr().err
