"""Networks: the FastGenNetwork interface, noise schedules, samplers, toy networks and architectures.

Architectures live in sub-packages (EDM/, EDM2/, DiT/, ...) and are imported only when named by a config.
"""

from fastgen.networks.network import CausalFastGenNetwork, FastGenNetwork
from fastgen.networks.noise_schedule import PRED_TYPES, BaseNoiseSchedule, get_noise_schedule

__all__ = ["PRED_TYPES", "BaseNoiseSchedule", "CausalFastGenNetwork", "FastGenNetwork", "get_noise_schedule"]
