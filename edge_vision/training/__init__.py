"""Interactive data collection and background training (jetson-inference's Recognizer).

- :mod:`edge_vision.training.dataset`: the dataset folder (layout, sanitising, split, stats,
  adding images, skipping unreadable files); no torch.
- :mod:`edge_vision.training.trainer`: the training job (fine-tunes EfficientNet-Lite0) run in
  its own process, with progress through a queue, checkpoints and atomic ONNX export.

Nothing here knows ROS: the ``dataset`` and ``trainer`` nodes wrap these.
"""
