"""``torchrun --nproc_per_node=N -m offline_train.distill STORE --out MODEL``: the
``vpd-stream distill`` command, one process per GPU (the training module never imports
the command line, so there is no cycle between them)."""
from offline_train.commands.corpus import distill

distill(prog_name="offline_train.distill")
