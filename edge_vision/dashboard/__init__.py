"""Web dashboard (Plotly Dash) over a running edge_vision system.

The web process keeps no state of its own: streams, models, actions, prompts and training live
in the ROS nodes (found through the ROS graph), events in the event store. ``ros_bridge`` talks
to ROS, ``app`` builds the Dash app (header, alerts, routing) and ``pages`` holds one module
per page (its layout, callbacks and routes), ``streams`` starts pipelines through the launcher,
``auth`` guards non-loopback binds. The ``dashboard`` node (``edge_vision.nodes.dashboard``)
puts them together.
"""
