"""The dashboard's pages, one module each; each module's ``register(app, context)`` adds the
page's callbacks (and routes) to the Dash app and returns the page's layout function.

- ``streams``: video sources, adding and stopping streams, live view (``/streams``, ``/``)
- ``models``: model zoo, pull, load into a node, ONNX import (``/models``)
- ``events``: event table and timeline (``/events``)
- ``actions``: action types and instances, instance parameters as controls (``/actions``)
- ``prompts``: open-vocabulary detector prompts (``/prompts``)
- ``training``: dataset tags, recording, uploads; trainer control and progress (``/training``)

``common`` holds what several pages use (:class:`~.common.PageContext`, status messages,
controls from parameter descriptors).
"""
