"""Post-processing of label maps: keep the largest connected component (nnU-Net v2's rule).

:func:`determine_postprocessing` decides from cross-validation predictions which steps help,
:func:`apply_postprocessing` applies a :class:`PostprocessingPlan` to one label map and
:func:`postprocess_folder` to a folder of label files. See ``docs/postprocessing.md``.
"""

from medtoken.postprocessing.components import remove_all_but_largest_component
from medtoken.postprocessing.determine import (
    determine_postprocessing,
    determine_postprocessing_for_run,
    find_cv_predictions,
)
from medtoken.postprocessing.folder import postprocess_folder
from medtoken.postprocessing.plan import (
    PostprocessingPlan,
    apply_postprocessing,
    read_plan,
    write_plan,
)

__all__ = [
    "PostprocessingPlan",
    "apply_postprocessing",
    "determine_postprocessing",
    "determine_postprocessing_for_run",
    "find_cv_predictions",
    "postprocess_folder",
    "read_plan",
    "remove_all_but_largest_component",
    "write_plan",
]
