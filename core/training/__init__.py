"""The training lab: data sets and their loaders, augmentation, extra synthetic fakes, training,
out-of-fold validation, replicate merging and the validation report.

It imports the engine (`core.audio`, `core.features`, `core.models`, ...) and is never imported
by it, nor by the pages: the app runs without it. `python -m core train|evaluate|merge` reach it
through `core.training.train`.
"""
