from .stacked_seg_data_preprocessor import StackedSegDataPreProcessor  # noqa: F401
