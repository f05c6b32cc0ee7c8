"""Video Pose Distillation: train the student F (and decoder D) from a prepared corpus."""
