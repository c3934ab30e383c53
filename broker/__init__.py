"""配信基盤 (the wire): sealed envelopes, keys and trust, AMQP transport, control plane.

Knows no business rule and imports nothing else of ours.
"""
