"""A transaction remembers the locks it took, for itself alone and only while it lasts."""

from tsunagu_outbox.locks import holds, remembering_locks, savepoint_locks, took


def test_outside_a_transaction_nothing_is_remembered():
    took("case-1")
    assert not holds("case-1")


def test_a_lock_taken_is_remembered_until_the_transaction_ends():
    with remembering_locks():
        assert not holds("case-1")
        took("case-1", "case-2")
        assert holds("case-1") and holds("case-2")
    assert not holds("case-1")


def test_a_transaction_begun_inside_another_starts_with_none_and_leaves_the_others_as_they_were():
    with remembering_locks():
        took("case-1")
        with remembering_locks():
            assert not holds("case-1")
            took("case-2")
        assert holds("case-1") and not holds("case-2")


def test_a_savepoint_rolled_back_forgets_the_locks_taken_in_it_and_keeps_the_ones_before():
    with remembering_locks():
        took("case-1")
        try:
            with savepoint_locks():
                took("case-2")
                raise ValueError("the savepoint is rolled back")
        except ValueError:
            pass
        assert holds("case-1") and not holds("case-2")
        with savepoint_locks():
            took("case-3")
        assert holds("case-3")
