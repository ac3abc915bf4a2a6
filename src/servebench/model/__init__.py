"""Model preparation: resolve the model, build its runtimes, check fidelity, benchmark in-process.

- `resolve`: which model the config means (local dir, HF cache, hub, synthetic fallback);
- `synthetic`: the synthetic fallback (seeded random weights, a tokenizer trained on the corpus);
- `build`: runtime directories (pytorch, onnx, onnx-int8, CUDA fp16) and their provenance;
- `runtime`: loading a runtime directory for inference (copied into every Bento, so it imports
  nothing else of servebench);
- `fidelity`: agreement with pytorch fp32 and the gate; `tokens`: payload token lengths;
- `bench`: the in-process ceiling per runtime, batch size and thread count.

Nothing is imported here: the workflow imports `servebench.model.resolve` at parse time, and
torch must not come with it.
"""
