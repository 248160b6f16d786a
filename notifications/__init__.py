"""Messages: kinds, outbox rules, templates, the dispatcher and the local inbox."""

# Every message carries its outbox key in this header (email, JSON, form and XML webhooks):
# delivery is at least once (a dispatcher killed between the target's answer and recording it
# sends again), so a receiver that keeps the keys it has seen shows each message once, as the
# local inbox does. Mail clients and webhooks that ignore the header show such a repeat.
IDEMPOTENCY_HEADER = "Idempotency-Key"
