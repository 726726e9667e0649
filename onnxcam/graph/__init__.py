"""The rewriter: builds explain graphs from a canonical model using standard ONNX ops only."""
