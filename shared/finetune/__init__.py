"""Step 7 parts: the training dataset, its validator, the trainers, and the registry of fine-tuned artifacts."""
