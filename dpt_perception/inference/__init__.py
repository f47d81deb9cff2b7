"""ROS-free inference runtime: the PerceptionPipeline (frames in, every output out) and what it and the
node use: preprocessing, labels, colourising, geometry, depth semantics, scheduling, weights, backends.

Import from the submodules (e.g. `from dpt_perception.inference.pipeline import PerceptionPipeline`);
this package imports nothing heavy by itself so the CLI modules start fast.
"""
