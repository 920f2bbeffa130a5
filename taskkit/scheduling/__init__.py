"""The scheduling layer: delayed runs promoted when due (periodic sync comes with Beat)."""

from .promote import next_due, promote_due, resend_outbox

__all__ = ["next_due", "promote_due", "resend_outbox"]
