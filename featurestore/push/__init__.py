"""Push: rows a service computes at request time, written online and offline with the
stream consumer's checks (``rows``), the online writer, a batching offline buffer
(``buffer``) and interval lineage (``lineage``); ``pusher`` ties them together."""

from featurestore.push.pusher import TARGETS, Pusher, PushResult

__all__ = ["TARGETS", "PushResult", "Pusher"]
