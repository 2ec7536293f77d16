"""Tsunagu partner-notification service: partner registry, subscriptions, deliveries and partner responses."""
