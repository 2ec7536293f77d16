"""The intake domain: what a consultation is, and what the screening chart suggests."""
