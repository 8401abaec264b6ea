"""The ad click-through-rate task: DeepFM model, training, pruning and embedding compression."""
