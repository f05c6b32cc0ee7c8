"""VIPE*: training data (MSR Action3D, procedural 3D poses, random cameras), training and
evaluation of the view-invariant pose teacher. The model itself is vpd_stream.models.vipe."""
