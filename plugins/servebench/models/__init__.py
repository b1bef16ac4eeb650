"""The models under test: recipes (what each model is), training and export (joblib, ONNX, metadata) and the
dense weights format native servers load. May import: base."""
