"""vpd-stream: streaming video analytics for individual sports (Video Pose Distillation)."""
__version__ = "0.1.0"
