"""Training and evaluation of the shared-encoder DPT (ROS-free).

Modules: ``data`` (datasets, augmentation, collate), ``losses``, ``metrics``, ``protocols``,
``report``, ``config`` (the one dataclass + YAML + dotted-override loader), ``train_loop`` /
``eval_loop`` (the loops), ``distill`` (pair -> one encoder) and ``train`` / ``evaluate`` /
``paper`` (command lines).
Nothing is imported here so ``import dpt_perception.training`` stays cheap.
"""
