"""Following a hit up in Lemmy (0.19.x; routes and shapes read from Lemmy 0.19.20): find
who uploaded the image and what uses it, then report, remove, purge or ban as the admin's
policy for that kind of evidence says.

``api`` speaks Lemmy's HTTP API, ``policy`` decides (pure), ``store`` keeps the durable
steps, ``followup`` turns hits into steps and runs them with retries.
"""
