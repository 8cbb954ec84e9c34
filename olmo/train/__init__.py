"""Training: the experiment config (torch-free) and, with the ``train`` extra, the trainer."""
