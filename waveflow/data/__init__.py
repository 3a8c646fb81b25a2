"""Data: file lists, LJSpeech metadata, splits and preparation, audio checks, training/validation datasets.

Datasets return audio only (no feature maths); the training loop computes mels on the device.
"""

from waveflow.data.dataset import ScanReport, SegmentDataset, UtteranceDataset, scan_audio
from waveflow.data.demo import build_demo_corpus
from waveflow.data.filelists import read_filelist, write_filelist
from waveflow.data.ljspeech import (
    SPLITS,
    CorpusSplit,
    Utterance,
    check_contamination,
    extract_archive,
    find_corpus_root,
    load_split,
    read_id_list,
    read_metadata,
    split_corpus,
)
from waveflow.data.prepare import prepare_ljspeech

__all__ = [
    "SPLITS",
    "CorpusSplit",
    "ScanReport",
    "SegmentDataset",
    "Utterance",
    "UtteranceDataset",
    "build_demo_corpus",
    "check_contamination",
    "extract_archive",
    "find_corpus_root",
    "load_split",
    "prepare_ljspeech",
    "read_filelist",
    "read_id_list",
    "read_metadata",
    "scan_audio",
    "split_corpus",
    "write_filelist",
]
