"""Tsunagu intake service: consultations at any counter, persons, needs, consent and the screening chart."""
