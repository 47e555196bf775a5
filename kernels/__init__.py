"""Kernels: each family has a Triton kernel for CUDA tensors beside the plain-torch reference that serves
the CPU path and the tests, and one public entry point that asks `dispatch.use_triton` which to run
(DATASELECT_KERNELS=reference forces the references everywhere)."""
