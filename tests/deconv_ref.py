"""The deconvnet as a modified gradient, shared by the PyTorch references:
ReLU's backward is ReLU of the incoming signal (paper.md §3, §6)."""
import torch


class DeconvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, g):
        return g.clamp(min=0)
