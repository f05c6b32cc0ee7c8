"""JMRN training and evaluation: heatmap recognizer, pose-aware augmentation, joint-contrastive
loss, learned late fusion and pose-guided clip selection (Shah et al., WACV 2022)."""
