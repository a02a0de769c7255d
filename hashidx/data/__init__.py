"""Images and their labels: datasets, decoding, the split, label-only items, query files, downloads."""

from hashidx.data.datasets import IMAGE_SUFFIXES, Dataset, load_dataset, read_list
from hashidx.data.download import CATALOGUE, Source, download
from hashidx.data.images import load_image
from hashidx.data.labels import LabelFile, read_labels
from hashidx.data.queryfile import image_list, read_query_file
from hashidx.data.split import Split, load_split, make_split, save_split

__all__ = [
    "CATALOGUE",
    "IMAGE_SUFFIXES",
    "Dataset",
    "LabelFile",
    "Source",
    "Split",
    "download",
    "image_list",
    "load_dataset",
    "load_image",
    "load_split",
    "make_split",
    "read_labels",
    "read_list",
    "read_query_file",
    "save_split",
]
