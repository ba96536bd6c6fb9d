"""act: sirens and strobes on GPIO relays, the silence button, and the SafetyLoop thread
that runs decide + act together with no disk or network on its path."""

from gateway.act.buttons import SilenceButton
from gateway.act.loop import SafetyLoop
from gateway.act.safety import SafetyCore, Step
from gateway.act.sirens import RelayChange, Siren, Sirens

__all__ = ["RelayChange", "SafetyCore", "SafetyLoop", "SilenceButton", "Siren", "Sirens", "Step"]
