"""Semi-supervised methods as plug-ins: the :class:`Method` interface, a registry, the built-ins.

``method.name`` in a config picks a registered method; the built-ins are ``supervised``,
``mean_teacher``, ``cutmix_seg`` and ``ael``. A method of your own subclasses :class:`Method`
(or one of the built-ins), gives a config section class (a frozen dataclass subclassing
:class:`ael.config.MethodConfig`), and registers with :func:`register_method`; the trainer, the
run store and the dashboard then train and show it without a change.
"""

from ael.methods.base import Collectives, LoaderNeeds, Method, MethodContext, TrainBatch
from ael.methods.registry import build_method, method_class, method_names, register_method, unregister_method
from ael.methods.storage import SampleRecord, StepStorage

# The built-ins register themselves on import, in the order of the ladder.
from ael.methods.supervised import SupervisedMethod  # isort: skip
from ael.methods.mean_teacher import MeanTeacherMethod, unsup_rampup  # isort: skip
from ael.methods.cutmix_seg import CutMixSegMethod  # isort: skip
from ael.methods.ael import AELMethod  # isort: skip

__all__ = [
    "AELMethod",
    "Collectives",
    "CutMixSegMethod",
    "LoaderNeeds",
    "MeanTeacherMethod",
    "Method",
    "MethodContext",
    "SampleRecord",
    "StepStorage",
    "SupervisedMethod",
    "TrainBatch",
    "build_method",
    "method_class",
    "method_names",
    "register_method",
    "unregister_method",
    "unsup_rampup",
]
