"""``rtpose view``: what the tracker sees, in a browser, without touching the loop.

A separate process subscribes to a daemon's ZeroMQ stream (``stream``) and serves a
page (``server``, aiohttp; the page is plain HTML and JavaScript in ``static/``). See
``command`` for the command line. Nothing here is imported by the live path.
"""
