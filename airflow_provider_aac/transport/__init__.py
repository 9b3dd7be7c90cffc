"""The provider's HTTP edges: the only code that sends bytes to AAC.

``token_post`` sends the refresh (requests, gated and bounded); ``requests_edge`` and
``httpx_edge`` send ``/v4`` requests for the hook's sync and async drivers; ``bound_session``
is the session ``AACHook.get_conn()`` returns. Each turns what came back into the core's
words (``core.exchange.HttpAnswer``, or a raised ``TransportFailure`` that says whether the
request may have reached AAC). They import only ``core``, so ``tokens`` may use them.
"""
