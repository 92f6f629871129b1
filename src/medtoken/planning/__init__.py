"""nnU-Net v2 experiment planning: dataset fingerprint, plans by nnU-Net's default rules, and a
typed reader of ``nnUNetPlans.json``.

Axis order: nnU-Net works in the axis order of SimpleITK arrays, ``(z, y, x)``; medtoken reads
NIfTI/ITK files in nibabel order, ``(x, y, z)``. Everything written into a plans file (spacings,
shapes, patch sizes, kernel sizes, strides, ``transpose_forward``) is in nnU-Net's order, so that
an nnU-Net user reads it as it is; :class:`~medtoken.planning.plans.NnunetPlan` maps it back to
medtoken's array axes (``roi_size``, ``spacing``, ``kernel_sizes``, ``strides``). 2D images are,
as in nnU-Net, 3D images with one slice: a PNG ``(H, W)`` is ``(1, H, W)`` with spacing
``(999, 1, 1)``.
"""
