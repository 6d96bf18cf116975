"""Serving: requests as plans, run under admission.

A request is a :class:`~.plans.Plan` run by the one :class:`~.runner.Runner`
through a gate: the service's :class:`~.admission.Admission` (deadlines, the
memory budget, the engine's slots and threads) or the CLI's offline one. The
engine, batching, tickets, learned speed, sizing, budget, result cache and
metrics live here, and :class:`~.services.Services` holds them all for the app.
"""
