"""Tsunagu web console: server-rendered Japanese pages over the four services' APIs.

It owns no data: every page is read from, and every form is sent to, the services' public APIs
with the signed-in person's own token, so each service's role checks decide what they may do.
"""
