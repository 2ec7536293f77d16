"""The partner-notification domain: what a partner wants, what it may see, how webhooks are retried."""
