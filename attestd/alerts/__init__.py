"""Telling admins about hits: e-mail, chat and push services (apprise), webhooks and a
fediverse direct message, per hit or as a digest, rate-limited.

``message`` and ``plan`` are pure (what to say, when to send); ``channels`` and
``notifier`` are the sending edge. Nothing here ever carries the image, its perceptual
hashes or a preview: an :class:`~attestd.alerts.message.AlertEvent` has no field for them.
"""
