"""The study's training side: subject-grouped stratified splits, batched augmentation, softmax + batch-hard triplet
loss, cached frozen-body features, the fold loop with early stopping and resume, and the run folder.

Entry point: :func:`gsscreen.training.study.run_study` (CLI: ``gsscreen study``). Heavy modules (torch) are imported
by the submodules, not here, so ``import gsscreen.training`` stays cheap.
"""

from gsscreen.training.config import AugmentConfig, FineTuneConfig, OptimConfig, StudyConfig, TrainConfig, preset

__all__ = ["AugmentConfig", "FineTuneConfig", "OptimConfig", "StudyConfig", "TrainConfig", "preset"]
