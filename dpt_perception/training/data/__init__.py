"""Training data: readers of several dataset formats behind one sample representation,
a procedural RGB-D + segmentation scene generator, augmentation and batching.

Public API::

    build_dataset(spec, transform=None)      datasets from YAML-friendly dicts (see factory)
    find_class_info(dataset)                 (class_names, class_colors) through wrappers
    TrainTransform / EvalTransform / collate  numpy samples -> tensors -> batches
    SkipCorrupt, CorruptSampleError           corrupt-sample handling
    FolderDataset, NYUDepthV2Dataset, ADE20KDataset, KITTIDepthDataset,
    RosbagRGBDDataset, SyntheticDataset       the readers
    render_scene, random_scene, write_folder_dataset, SYNTHETIC_CLASS_NAMES / COLORS

The raw sample layout is documented in :mod:`.sample`, the tensor layout in :mod:`.augment`.
"""

from .ade20k import ADE20KDataset
from .augment import EvalTransform, TrainTransform, collate, minimal_resize_shape
from .base import SampleDataset
from .factory import DATASET_TYPES, build_dataset, find_class_info
from .folder import FolderDataset
from .kitti import KITTIDepthDataset
from .nyu import NYU_K, NYUDepthV2Dataset
from .robust import SkipCorrupt
from .rosbag_rgbd import RosbagRGBDDataset
from .sample import DEFAULT_IGNORE_INDEX, CorruptSampleError, make_sample
from .synthetic import CLASS_COLORS as SYNTHETIC_CLASS_COLORS
from .synthetic import CLASS_NAMES as SYNTHETIC_CLASS_NAMES
from .synthetic import SyntheticDataset, random_scene, render_scene, write_folder_dataset

__all__ = [
    "ADE20KDataset",
    "CorruptSampleError",
    "DATASET_TYPES",
    "DEFAULT_IGNORE_INDEX",
    "EvalTransform",
    "FolderDataset",
    "KITTIDepthDataset",
    "NYUDepthV2Dataset",
    "NYU_K",
    "RosbagRGBDDataset",
    "SYNTHETIC_CLASS_COLORS",
    "SYNTHETIC_CLASS_NAMES",
    "SampleDataset",
    "SkipCorrupt",
    "SyntheticDataset",
    "TrainTransform",
    "build_dataset",
    "collate",
    "find_class_info",
    "make_sample",
    "minimal_resize_shape",
    "random_scene",
    "render_scene",
    "write_folder_dataset",
]
