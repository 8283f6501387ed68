"""Intake: referrals from contact tracing, the pending-admission queue, risk areas."""
