"""Runtime: model files turned into warmed predictors.

The AnimeGANv2 architecture and its one layer plan (:mod:`.model`), the strip
forward and its memory (:mod:`.tiling`, :mod:`.strip_memory`), PyTorch and
ONNX Runtime predictors (:mod:`.predictors`), the reduced-precision policy
(:mod:`.precision`, :mod:`.quantize`), finding, describing and loading files
(:mod:`.weights`, :mod:`.pull`), styles by name (:mod:`.registry`) and what a
forward costs in memory (:mod:`.memory`). It knows nothing of requests.
"""
