"""Notifications: what happened (``events``), who wants to hear it (``subscriptions``:
webhooks and email recipients) and the fan-out and the record of each try
(``dispatch``). The sending itself (HTTP, SMTP) runs on the worker's `default` queue
(``worker.notify``), never inside a web request."""
