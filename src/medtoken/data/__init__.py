"""Reading and writing images and labels, dataset layouts, folds, preprocessing, synthetic data."""
