# COCO 2017 instance segmentation (80 classes): mmdet's settings unchanged
# (Resize to (1333, 800) keep-ratio, flip; bbox + segm CocoMetric).
# Data: see mmdet's docs/en/user_guides/dataset_prepare.md, default folder data/coco/.
# Another folder: set data_root of {train,val,test}_dataloader.dataset AND ann_file of
# {val,test}_evaluator (a child `data_root` does not reach the inherited dicts).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
# mmdet's CocoDataset plus per-sample checks (mmpatch/datasets/sample_checks.py): a missing or
# undecodable image stops with an error naming the file. (Registered by `import mmpatch`.)
train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
