"""Model runtime: TF.js-to-ONNX conversion, onnxruntime detectors and output decoders.

Pure Python (numpy, onnx, onnxruntime, OpenCV); nothing here imports rclpy.
"""
