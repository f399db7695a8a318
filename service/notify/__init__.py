"""Scheduling sync (DESIGN §7.3): the outbox written inside a use case's transaction, the
topics (which change fires which), the notifications (R4 backport Bundles, signed), the timers
of time-driven events and the delivery worker that sends them.
"""
