"""GPU-free stand-in for NCCL and a cluster: loads the real plugin and drives it as NCCL does."""
