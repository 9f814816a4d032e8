"""Training: the shared loop (``engine``) and the tasks that run on it (``gpt``, ``tokenizer``)."""
