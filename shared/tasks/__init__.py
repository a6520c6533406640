"""Step 1 and 2 parts: the task prompts (NLP, questions, creative writing) and the task chain built from them."""
