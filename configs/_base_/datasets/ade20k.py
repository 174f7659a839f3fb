# ADE20K (ADEChallengeData2016, 150 classes, reduce_zero_label): mmseg's settings unchanged,
# 512x512 crops from images resized to (2048, 512) with ratio 0.5-2.0; tta_pipeline for --tta.
# Data: see mmseg's docs/en/user_guides/2_dataset_prepare.md (ADE20K); default folder below.
# Another folder: --cfg-options {train,val,test}_dataloader.dataset.data_root=PATH
# (all three: changing `data_root` in a child config does not reach the inherited dicts).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
data_root = 'data/ade/ADEChallengeData2016'
crop_size = (512, 512)  # as in the base; children that change it must also change the pipelines
# mmseg's ADE20KDataset plus per-sample checks (mmpatch/datasets/sample_checks.py): a missing or
# undecodable file, or a label outside the 150 classes, stops with an error naming the file.
# (Registered by `import mmpatch`, which every leaf config's custom_imports does.)
# mmseg's training pipeline and loader (pseudo_collate); only the dataset class changes.
train_dataloader = dict(dataset=dict(type='CheckedADE20KDataset'))
val_dataloader = dict(dataset=dict(type='CheckedADE20KDataset'))
test_dataloader = val_dataloader
# Evaluation: mmseg's IoUMetric (mIoU). tools/sweep.py tests its cells with PerImageIoUMetric
# (mmpatch/evaluation/: the same metrics plus each image's class areas, for the bootstrap CI).
