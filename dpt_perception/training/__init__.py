"""Training and evaluation of the shared-encoder DPT (ROS-free).

Modules: ``data`` (datasets, augmentation, collate), ``losses``, ``metrics``, ``report``,
``config`` (YAML + overrides), ``trainer`` (the loop), ``train`` / ``evaluate`` (command lines).
Nothing is imported here so ``import dpt_perception.training`` stays cheap.
"""
