"""Model-agnostic building blocks shared by the model families (2D and 3D via spatial_dims)."""
