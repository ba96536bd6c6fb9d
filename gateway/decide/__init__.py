"""decide: rules on sensor points and the alarms they raise. Pure logic (no I/O, no
threads): the safety loop in gateway.act drives it."""

from gateway.decide.alarm_book import Alarm, AlarmBook, UnknownAlarm
from gateway.decide.transition import KINDS, Transition

__all__ = ["Alarm", "AlarmBook", "KINDS", "Transition", "UnknownAlarm"]
