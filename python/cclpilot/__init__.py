"""cclpilot: live tuning of NCCL collectives inside one training job."""

__version__ = "0.1.0"
