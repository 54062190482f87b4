"""A small shop application that uses masa-jobs the way a user would.

``recorders`` are its infrastructure (mail, ledger, report archive), ``container``
its composition root, ``jobs`` its job args and handlers, ``services`` its
application code, which enqueues through an injected manager or through the
static facade. ``embedded`` is a second app that embeds the job container.
"""
