"""Kernels: each family has a Triton kernel for CUDA tensors, a plain-torch reference that serves the
CPU path and the tests, and one dispatch function that the engine calls."""
