"""Abandoned-call spike alerts.

    rules.py      what fires: thresholds per tenant, overridable per queue
    baseline.py   the Wilson score interval and the same-hour-of-week spans
    figures.py    calls of a window read from callstore.calls, counted per queue
    evaluate.py   the pure verdict and state machine, and the replay shared by
                  the live job and the backtest
    state.py      states, history and cursor in Postgres
    message.py    what a notification says
    notifiers.py  generic webhook (Standard Webhooks signature) and Slack
    outbox.py     notifications written with the state change, sent afterwards
    job.py        the scheduled job (every minute, once across replicas)
    backtest.py   the rules replayed over stored history, without notifying
    metrics.py    /metrics lines read from the state table
"""
