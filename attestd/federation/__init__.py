"""The node as an ActivityPub actor: documents, inbox, delivery queue (uses activitypub/)."""
