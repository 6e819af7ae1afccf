"""Hub folders: `export.save_hub_folder` (weights, config with `auto_map`, processor and the model's code files) and
`publishing` (model card, licence, citation and upload). Nothing here travels to the Hub."""

from .export import save_hub_folder

__all__ = ["save_hub_folder"]
