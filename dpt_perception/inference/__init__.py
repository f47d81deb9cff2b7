"""ROS-free inference runtime: preprocessing, the PerceptionPipeline (numpy in / numpy out), geometry,
colourising, metric scale/shift fitting, latest-frame scheduling and weights download.

Import from the submodules (e.g. `from dpt_perception.inference.pipeline import PerceptionPipeline`);
this package imports nothing heavy by itself so the CLI modules start fast.
"""
