"""The invertible core: every class here honours the contract in :mod:`waveflow.flows.base`."""

from waveflow.flows.actnorm import ActNorm
from waveflow.flows.base import Flow, FlowStep, SequentialFlow
from waveflow.flows.coupling import AdditiveCoupling, AffineCoupling
from waveflow.flows.invertible_conv import InvertibleConv1x1, LUInvertibleConv1x1
from waveflow.flows.multiscale import EarlyOutputSchedule, InversePlan, MultiScaleFlow
from waveflow.flows.permutation import ChannelPermutation, ChannelReverse
from waveflow.flows.squeeze import Squeeze, squeeze, unsqueeze

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "ChannelPermutation",
    "ChannelReverse",
    "EarlyOutputSchedule",
    "Flow",
    "FlowStep",
    "InversePlan",
    "InvertibleConv1x1",
    "LUInvertibleConv1x1",
    "MultiScaleFlow",
    "SequentialFlow",
    "Squeeze",
    "squeeze",
    "unsqueeze",
]
