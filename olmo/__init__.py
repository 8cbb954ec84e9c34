"""OLMo on Kubernetes: the model, trainer, data contracts and evaluation as one library.

The top-level package stays torch-free so that the config system (``olmo.config``) can be
imported by services whose images have no torch (data-prep, operator tooling).
"""

__version__ = "0.1.0"
