"""The AEL method: its step (:mod:`.method`) and its one-step-ahead CutMix partners (:mod:`.partners`)."""

from ael.methods.ael.method import AELMethod, excluded_classes
from ael.methods.ael.partners import PartnerBatch, PartnerStream

__all__ = ["AELMethod", "PartnerBatch", "PartnerStream", "excluded_classes"]
