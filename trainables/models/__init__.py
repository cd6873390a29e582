"""The models: CLIP through open_clip (any backbone, the zero-shot head, learned visual and deep
prompts), torchvision's ResNet-18 and other classifiers, text templates, and how pretrained
weights are found offline. No Ray and nothing registered."""
