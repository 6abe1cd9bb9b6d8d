"""The web console (/ui/): wallboard, reports, calls, recordings, alerts and
the access audit for people who log in as themselves. It sits above store/
and reports/ (the same queries as /api) and reuses receiver/'s HTTP helpers
(parameter checks, byte ranges, audio streaming); nothing imports it but
callstore/composition.py.

    web.py       sessions, language, CSRF, security headers, rendering
    pages.py     the routes and their handlers
    views.py     what pages show, and the parsing of their forms
    sessions.py  sessions, login throttling, the cookie key (Postgres)
    i18n.py      catalogues (messages/*.json), numbers and times per language
"""
